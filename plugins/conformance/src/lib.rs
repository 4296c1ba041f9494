//! `conformance`: the fixture the official MCP conformance suite exercises.
//!
//! It implements, as a sandboxed plugin, the tools, resources, prompts and completions that
//! the suite's reference "everything server" offers (both the 2025-11-25 and the 2026-07-28
//! requirement sets). Server→client requests (sampling, elicitation, roots) are expressed the
//! Portcullis way: the tool returns `input-required`, and the host either sends the requests
//! to a 2025 session and re-invokes us with the answers, or returns the 2026-07-28
//! `InputRequiredResult` and re-invokes us when the client retries.

wit_bindgen::generate!({
    world: "full-plugin",
    path: "../../wit",
});

use exports::portcullis::plugin::completion::{self, CompletionResult, Reference};
use exports::portcullis::plugin::prompts::{
    self, GetOutcome, Prompt, PromptArgument, PromptError, PromptMessage, PromptResult, Role,
};
use exports::portcullis::plugin::resources::{
    self, ReadOutcome, Resource, ResourceError, ResourceTemplate,
};
use exports::portcullis::plugin::tools::{self, CallOutcome, Tool, ToolError, ToolResult};
use portcullis::plugin::host::{self, ListKinds, LogLevel};
use portcullis::plugin::types::{
    Binary, CallContext, ClientFeatures, Content, Continuation, Elicitation, InputRequest,
    InputRequired, KeyedRequest, ResourceBody, ResourceContents,
};
use serde_json::{Value, json};
use std::time::Duration;

/// A 1×1 red PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x08, 0xd7, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xdd, 0x8d, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A minimal WAV file: 44-byte header, 8 kHz mono 8-bit, two samples of silence.
const WAV: &[u8] = &[
    b'R', b'I', b'F', b'F', 38, 0, 0, 0, b'W', b'A', b'V', b'E', b'f', b'm', b't', b' ', 16, 0, 0,
    0, 1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x40, 0x1f, 0, 0, 1, 0, 8, 0, b'd', b'a', b't', b'a', 2, 0, 0,
    0, 0x80, 0x80,
];

const NO_ARGS: &str = r#"{"type":"object","properties":{}}"#;

struct Fixture;

fn tool(name: &str, description: &str, input_schema: &str) -> Tool {
    Tool {
        name: name.into(),
        title: None,
        description: description.into(),
        input_schema: input_schema.into(),
        output_schema: None,
        annotations: None,
        required_scopes: vec![],
    }
}

fn done(content: Vec<Content>) -> CallOutcome {
    CallOutcome::Done(ToolResult {
        content,
        structured_content: None,
        is_error: false,
    })
}

fn text(t: impl Into<String>) -> Content {
    Content::Text(t.into())
}

fn png() -> Binary {
    Binary {
        data: PNG.to_vec(),
        mime_type: "image/png".into(),
    }
}

fn elicit(key: &str, message: &str, schema: Value) -> KeyedRequest {
    KeyedRequest {
        key: key.into(),
        request: InputRequest::Elicit(Elicitation {
            message: message.into(),
            requested_schema: schema.to_string(),
        }),
    }
}

fn sample(key: &str, prompt: &str, max_tokens: u32) -> KeyedRequest {
    KeyedRequest {
        key: key.into(),
        request: InputRequest::Sample(
            json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                "maxTokens": max_tokens,
            })
            .to_string(),
        ),
    }
}

fn roots(key: &str) -> KeyedRequest {
    KeyedRequest {
        key: key.into(),
        request: InputRequest::ListRoots,
    }
}

fn ask(requests: Vec<KeyedRequest>, state: Option<&str>) -> InputRequired {
    InputRequired {
        requests,
        state: state.map(str::to_string),
    }
}

fn name_schema() -> Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
}

/// The answers of a continuation, parsed, by key.
fn answers(c: &Option<Continuation>) -> Vec<(String, Value)> {
    c.iter()
        .flat_map(|c| c.responses.iter())
        .map(|r| {
            (
                r.key.clone(),
                serde_json::from_str(&r.value).unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn answer<'a>(all: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    all.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn state(c: &Option<Continuation>) -> Option<&str> {
    c.as_ref().and_then(|c| c.state.as_deref())
}

/// The text of a sampling result (`content` is one block or a list).
fn sampled_text(v: &Value) -> String {
    let content = &v["content"];
    let block = if content.is_array() {
        &content[0]
    } else {
        content
    };
    block["text"].as_str().unwrap_or_default().to_string()
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Ask for `requests` unless every key has been answered; then finish with `finish`.
fn ask_until_answered(
    c: &Option<Continuation>,
    requests: Vec<KeyedRequest>,
    state_value: Option<&str>,
    finish: impl FnOnce(&[(String, Value)]) -> CallOutcome,
) -> CallOutcome {
    let got = answers(c);
    let missing: Vec<KeyedRequest> = requests
        .into_iter()
        .filter(|r| answer(&got, &r.key).is_none())
        .collect();
    if missing.is_empty() {
        finish(&got)
    } else {
        // Missing or wrong keys: ask again for what is still missing (SEP-2322).
        CallOutcome::InputRequired(ask(missing, state_value))
    }
}

impl tools::Guest for Fixture {
    fn list_tools() -> Vec<Tool> {
        let mut tools = vec![
            tool(
                "test_simple_text",
                "Returns a simple text response",
                NO_ARGS,
            ),
            tool("test_image_content", "Returns an image", NO_ARGS),
            tool("test_audio_content", "Returns an audio clip", NO_ARGS),
            tool(
                "test_embedded_resource",
                "Returns an embedded resource",
                NO_ARGS,
            ),
            tool(
                "test_multiple_content_types",
                "Returns text, image and a resource",
                NO_ARGS,
            ),
            tool(
                "test_tool_with_logging",
                "Emits three log messages while it runs",
                NO_ARGS,
            ),
            tool(
                "test_tool_with_progress",
                "Reports progress 0, 50 and 100 of 100",
                NO_ARGS,
            ),
            tool(
                "test_error_handling",
                "Always fails with a tool error",
                NO_ARGS,
            ),
            tool(
                "test_sampling",
                "Asks the client's model to answer a prompt",
                r#"{"type":"object","properties":{"prompt":{"type":"string","description":"The prompt to send"}},"required":["prompt"]}"#,
            ),
            tool(
                "test_elicitation",
                "Asks the user for a username and email",
                r#"{"type":"object","properties":{"message":{"type":"string","description":"The message to show"}},"required":["message"]}"#,
            ),
            tool(
                "test_elicitation_sep1034_defaults",
                "Elicitation with defaults for every primitive type",
                NO_ARGS,
            ),
            tool(
                "test_elicitation_sep1330_enums",
                "Elicitation with every enum schema variant",
                NO_ARGS,
            ),
            tool(
                "test_missing_capability",
                "Needs the client's sampling capability",
                NO_ARGS,
            ),
            tool(
                "test_streaming_elicitation",
                "Asks for input while streaming",
                NO_ARGS,
            ),
            tool(
                "test_logging_tool",
                "Logs while it runs (only if the client set a log level)",
                NO_ARGS,
            ),
            tool(
                "test_trigger_tool_change",
                "Announces that the tool list changed",
                NO_ARGS,
            ),
            tool(
                "test_trigger_prompt_change",
                "Announces that the prompt list changed",
                NO_ARGS,
            ),
            tool(
                "test_input_required_result_elicitation",
                "InputRequiredResult with one elicitation",
                NO_ARGS,
            ),
            tool(
                "test_input_required_result_sampling",
                "InputRequiredResult with one sampling request",
                NO_ARGS,
            ),
            tool(
                "test_input_required_result_list_roots",
                "InputRequiredResult with one roots request",
                NO_ARGS,
            ),
            tool(
                "test_input_required_result_request_state",
                "InputRequiredResult that round-trips requestState",
                NO_ARGS,
            ),
            tool(
                "test_input_required_result_multiple_inputs",
                "InputRequiredResult with three requests",
                NO_ARGS,
            ),
            tool(
                "test_input_required_result_multi_round",
                "Two rounds of InputRequiredResult",
                NO_ARGS,
            ),
            tool(
                "test_input_required_result_tampered_state",
                "InputRequiredResult with integrity-protected state",
                NO_ARGS,
            ),
            tool(
                "test_input_required_result_capabilities",
                "Asks only for what the client declared",
                NO_ARGS,
            ),
        ];
        tools.push(tool(
            "test_custom_headers",
            "Echoes a region mirrored into the Mcp-Param-Region header (SEP-2243)",
            r#"{"type":"object","properties":{
                "region":{"type":"string","description":"Mirrored into a header","x-mcp-header":"Region"},
                "query":{"type":"string","description":"Not mirrored"}},
                "required":["region"]}"#,
        ));
        tools.push(tool(
            "json_schema_2020_12_tool",
            "A tool whose input schema uses JSON Schema 2020-12 keywords",
            &json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {
                    "name": {"type": "string"},
                    "address": {"$ref": "#/$defs/address"},
                    "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                    "phone": {"type": "string"},
                    "email": {"type": "string"}
                },
                "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
                "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
                "then": {"required": ["phone"]},
                "else": {"required": ["email"]},
                "additionalProperties": false
            })
            .to_string(),
        ));
        tools
    }

    fn call_tool(
        ctx: CallContext,
        name: String,
        arguments: String,
        c: Option<Continuation>,
    ) -> Result<CallOutcome, ToolError> {
        let args: Value = serde_json::from_str(&arguments)
            .map_err(|e| ToolError::InvalidArguments(format!("arguments are not JSON: {e}")))?;
        let outcome = match name.as_str() {
            "test_simple_text" => done(vec![text("This is a simple text response for testing.")]),
            "test_image_content" => done(vec![Content::Image(png())]),
            "test_audio_content" => done(vec![Content::Audio(Binary {
                data: WAV.to_vec(),
                mime_type: "audio/wav".into(),
            })]),
            "test_embedded_resource" => done(vec![Content::Resource(ResourceContents {
                uri: "test://embedded-resource".into(),
                mime_type: Some("text/plain".into()),
                body: ResourceBody::Text("This is an embedded resource content.".into()),
            })]),
            "test_multiple_content_types" => done(vec![
                text("Multiple content types test:"),
                Content::Image(png()),
                Content::Resource(ResourceContents {
                    uri: "test://mixed-content-resource".into(),
                    mime_type: Some("application/json".into()),
                    body: ResourceBody::Text(r#"{"test":"data","value":123}"#.into()),
                }),
            ]),
            "test_tool_with_logging" | "test_logging_tool" => {
                host::log(LogLevel::Info, None, "Tool execution started");
                sleep_ms(50);
                host::log(LogLevel::Info, None, "Tool processing data");
                sleep_ms(50);
                host::log(LogLevel::Info, None, "Tool execution completed");
                done(vec![text("Tool with logging executed successfully")])
            }
            "test_tool_with_progress" => {
                host::progress(0.0, Some(100.0), None);
                sleep_ms(50);
                host::progress(50.0, Some(100.0), None);
                sleep_ms(50);
                host::progress(100.0, Some(100.0), None);
                done(vec![text("Tool with progress executed successfully")])
            }
            "test_error_handling" => {
                return Err(ToolError::Failed(
                    "This tool intentionally returns an error for testing".into(),
                ));
            }
            "test_sampling" => {
                let prompt = args["prompt"].as_str().unwrap_or("Hello").to_string();
                ask_until_answered(&c, vec![sample("sample", &prompt, 100)], None, |got| {
                    done(vec![text(format!(
                        "LLM response: {}",
                        sampled_text(answer(got, "sample").unwrap())
                    ))])
                })
            }
            "test_elicitation" => {
                let message = args["message"]
                    .as_str()
                    .unwrap_or("Please provide your details")
                    .to_string();
                let schema = json!({"type": "object", "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"}},
                    "required": ["username", "email"]});
                ask_until_answered(&c, vec![elicit("user", &message, schema)], None, |got| {
                    done(vec![text(format!(
                        "User response: {}",
                        answer(got, "user").unwrap()
                    ))])
                })
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({"type": "object", "properties": {
                    "name": {"type": "string", "default": "John Doe"},
                    "age": {"type": "integer", "default": 30},
                    "score": {"type": "number", "default": 95.5},
                    "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "default": true}}});
                ask_until_answered(
                    &c,
                    vec![elicit("form", "Please review your details", schema)],
                    None,
                    |got| elicitation_completed(answer(got, "form").unwrap()),
                )
            }
            "test_elicitation_sep1330_enums" => {
                let schema = json!({"type": "object", "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"}]},
                    "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "items": {"anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"}]}}}});
                ask_until_answered(
                    &c,
                    vec![elicit("form", "Choose your options", schema)],
                    None,
                    |got| elicitation_completed(answer(got, "form").unwrap()),
                )
            }
            "test_missing_capability" => {
                ask_until_answered(&c, vec![sample("sample", "Say hello", 20)], None, |got| {
                    done(vec![text(format!(
                        "Sampled: {}",
                        sampled_text(answer(got, "sample").unwrap())
                    ))])
                })
            }
            "test_streaming_elicitation" => {
                host::progress(1.0, Some(2.0), Some("asking the user"));
                ask_until_answered(
                    &c,
                    vec![elicit("user_name", "What is your name?", name_schema())],
                    None,
                    |got| {
                        done(vec![text(format!(
                            "Hello, {}!",
                            answer(got, "user_name").unwrap()["content"]["name"]
                        ))])
                    },
                )
            }
            "test_trigger_tool_change" => {
                host::notify_lists_changed(ListKinds::TOOLS);
                done(vec![text("Tool list change announced")])
            }
            "test_trigger_prompt_change" => {
                host::notify_lists_changed(ListKinds::PROMPTS);
                done(vec![text("Prompt list change announced")])
            }
            "test_input_required_result_elicitation" => ask_until_answered(
                &c,
                vec![elicit("user_name", "What is your name?", name_schema())],
                None,
                |got| {
                    let name = answer(got, "user_name").unwrap()["content"]["name"]
                        .as_str()
                        .unwrap_or("stranger")
                        .to_string();
                    done(vec![text(format!("Hello, {name}!"))])
                },
            ),
            "test_input_required_result_sampling" => ask_until_answered(
                &c,
                vec![sample(
                    "capital_question",
                    "What is the capital of France?",
                    100,
                )],
                None,
                |got| {
                    done(vec![text(sampled_text(
                        answer(got, "capital_question").unwrap(),
                    ))])
                },
            ),
            "test_input_required_result_list_roots" => {
                ask_until_answered(&c, vec![roots("client_roots")], None, |got| {
                    let roots = &answer(got, "client_roots").unwrap()["roots"];
                    let uris: Vec<&str> = roots
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r["uri"].as_str())
                        .collect();
                    done(vec![text(format!("Client roots: {}", uris.join(", ")))])
                })
            }
            "test_input_required_result_request_state" => {
                let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});
                if state(&c) == Some("awaiting-confirmation")
                    && answer(&answers(&c), "confirm").is_some()
                {
                    done(vec![text("state-ok: confirmation received")])
                } else {
                    CallOutcome::InputRequired(ask(
                        vec![elicit("confirm", "Please confirm", schema)],
                        Some("awaiting-confirmation"),
                    ))
                }
            }
            "test_input_required_result_multiple_inputs" => ask_until_answered(
                &c,
                vec![
                    elicit("user_name", "What is your name?", name_schema()),
                    sample("greeting", "Generate a greeting", 50),
                    roots("client_roots"),
                ],
                Some("multiple-inputs"),
                |_| done(vec![text("All inputs received")]),
            ),
            "test_input_required_result_multi_round" => {
                let got = answers(&c);
                match (state(&c), answer(&got, "step1"), answer(&got, "step2")) {
                    (Some("round-2"), _, Some(color)) => done(vec![text(format!(
                        "Favourite colour: {}",
                        color["content"]["color"]
                    ))]),
                    (Some("round-1"), Some(_), _) | (Some("round-2"), _, None) => {
                        let schema = json!({"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]});
                        CallOutcome::InputRequired(ask(
                            vec![elicit(
                                "step2",
                                "Step 2: What is your favorite color?",
                                schema,
                            )],
                            Some("round-2"),
                        ))
                    }
                    _ => CallOutcome::InputRequired(ask(
                        vec![elicit("step1", "Step 1: What is your name?", name_schema())],
                        Some("round-1"),
                    )),
                }
            }
            "test_input_required_result_tampered_state" => {
                if state(&c) == Some("untampered") {
                    done(vec![text("state verified")])
                } else {
                    CallOutcome::InputRequired(ask(
                        vec![elicit("confirm", "Please confirm", name_schema())],
                        Some("untampered"),
                    ))
                }
            }
            "test_input_required_result_capabilities" => {
                let mut wanted = Vec::new();
                if ctx.client.contains(ClientFeatures::ELICITATION) {
                    wanted.push(elicit("user_name", "What is your name?", name_schema()));
                }
                if ctx.client.contains(ClientFeatures::SAMPLING) {
                    wanted.push(sample("greeting", "Generate a greeting", 50));
                }
                if ctx.client.contains(ClientFeatures::ROOTS) {
                    wanted.push(roots("client_roots"));
                }
                if wanted.is_empty() {
                    done(vec![text("The client declared no input capabilities")])
                } else {
                    ask_until_answered(&c, wanted, None, |_| {
                        done(vec![text("Capability-appropriate inputs received")])
                    })
                }
            }
            "json_schema_2020_12_tool" => done(vec![text("ok")]),
            "test_custom_headers" => done(vec![text(format!(
                "region={}",
                args["region"].as_str().unwrap_or_default()
            ))]),
            _ => return Err(ToolError::UnknownTool),
        };
        Ok(outcome)
    }
}

fn elicitation_completed(result: &Value) -> CallOutcome {
    done(vec![text(format!(
        "Elicitation completed: action={}, content={}",
        result["action"].as_str().unwrap_or("unknown"),
        result.get("content").cloned().unwrap_or(json!({}))
    ))])
}

impl resources::Guest for Fixture {
    fn list_resources() -> Vec<Resource> {
        let r = |uri: &str, name: &str, description: &str, mime: &str| Resource {
            uri: uri.into(),
            name: name.into(),
            title: None,
            description: Some(description.into()),
            mime_type: Some(mime.into()),
            size: None,
            required_scopes: vec![],
        };
        vec![
            r(
                "test://static-text",
                "static-text",
                "A static text resource",
                "text/plain",
            ),
            r(
                "test://static-binary",
                "static-binary",
                "A static binary resource (PNG)",
                "image/png",
            ),
            r(
                "test://watched-resource",
                "watched-resource",
                "A resource clients may subscribe to",
                "text/plain",
            ),
        ]
    }

    fn list_resource_templates() -> Vec<ResourceTemplate> {
        vec![ResourceTemplate {
            uri_template: "test://template/{id}/data".into(),
            name: "template-data".into(),
            title: None,
            description: Some("Data for an id".into()),
            mime_type: Some("application/json".into()),
            required_scopes: vec![],
        }]
    }

    fn read_resource(
        _ctx: CallContext,
        uri: String,
        _c: Option<Continuation>,
    ) -> Result<ReadOutcome, ResourceError> {
        let contents = |mime: &str, body: ResourceBody| {
            Ok(ReadOutcome::Done(vec![ResourceContents {
                uri: uri.clone(),
                mime_type: Some(mime.into()),
                body,
            }]))
        };
        match uri.as_str() {
            "test://static-text" => {
                contents("text/plain", ResourceBody::Text("This is the content of the static text resource.".into()))
            }
            "test://static-binary" => contents("image/png", ResourceBody::Blob(PNG.to_vec())),
            "test://watched-resource" => contents("text/plain", ResourceBody::Text("Watched resource content".into())),
            _ => match uri.strip_prefix("test://template/").and_then(|rest| rest.strip_suffix("/data")) {
                Some(id) if !id.is_empty() && !id.contains('/') => contents(
                    "application/json",
                    ResourceBody::Text(json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string()),
                ),
                _ => Err(ResourceError::NotFound),
            },
        }
    }
}

impl prompts::Guest for Fixture {
    fn list_prompts() -> Vec<Prompt> {
        let arg = |name: &str, description: &str| PromptArgument {
            name: name.into(),
            title: None,
            description: Some(description.into()),
            required: true,
        };
        let p = |name: &str, description: &str, arguments: Vec<PromptArgument>| Prompt {
            name: name.into(),
            title: None,
            description: description.into(),
            arguments,
            required_scopes: vec![],
        };
        vec![
            p(
                "test_simple_prompt",
                "A simple prompt without arguments",
                vec![],
            ),
            p(
                "test_prompt_with_arguments",
                "A prompt with two arguments",
                vec![
                    arg("arg1", "First test argument"),
                    arg("arg2", "Second test argument"),
                ],
            ),
            p(
                "test_prompt_with_embedded_resource",
                "A prompt that embeds a resource",
                vec![arg("resourceUri", "URI of the resource to embed")],
            ),
            p("test_prompt_with_image", "A prompt with an image", vec![]),
            p(
                "test_input_required_result_prompt",
                "A prompt that needs input from the user first",
                vec![],
            ),
        ]
    }

    fn get_prompt(
        _ctx: CallContext,
        name: String,
        arguments: Vec<(String, String)>,
        c: Option<Continuation>,
    ) -> Result<GetOutcome, PromptError> {
        let arg = |n: &str| {
            arguments
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let user = |content: Content| PromptMessage {
            role: Role::User,
            content,
        };
        let result = |messages: Vec<PromptMessage>| {
            GetOutcome::Done(PromptResult {
                description: None,
                messages,
            })
        };
        Ok(match name.as_str() {
            "test_simple_prompt" => {
                result(vec![user(text("This is a simple prompt for testing."))])
            }
            "test_prompt_with_arguments" => {
                let (Some(a1), Some(a2)) = (arg("arg1"), arg("arg2")) else {
                    return Err(PromptError::InvalidArguments(
                        "arg1 and arg2 are required".into(),
                    ));
                };
                result(vec![user(text(format!(
                    "Prompt with arguments: arg1='{a1}', arg2='{a2}'"
                )))])
            }
            "test_prompt_with_embedded_resource" => {
                let Some(uri) = arg("resourceUri") else {
                    return Err(PromptError::InvalidArguments(
                        "resourceUri is required".into(),
                    ));
                };
                result(vec![
                    user(Content::Resource(ResourceContents {
                        uri,
                        mime_type: Some("text/plain".into()),
                        body: ResourceBody::Text("Embedded resource content for testing.".into()),
                    })),
                    user(text("Please process the embedded resource above.")),
                ])
            }
            "test_prompt_with_image" => result(vec![
                user(Content::Image(png())),
                user(text("Please analyze the image above.")),
            ]),
            "test_input_required_result_prompt" => {
                let schema = json!({"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]});
                let got = answers(&c);
                match answer(&got, "user_context") {
                    Some(a) => result(vec![user(text(format!(
                        "Use this context: {}",
                        a["content"]["context"].as_str().unwrap_or("none")
                    )))]),
                    None => GetOutcome::InputRequired(ask(
                        vec![elicit(
                            "user_context",
                            "What context should the prompt use?",
                            schema,
                        )],
                        None,
                    )),
                }
            }
            _ => return Err(PromptError::UnknownPrompt),
        })
    }
}

impl completion::Guest for Fixture {
    fn complete(
        _ctx: CallContext,
        reference: Reference,
        argument_name: String,
        argument_value: String,
        _context: Vec<(String, String)>,
    ) -> Result<CompletionResult, String> {
        let candidates: &[&str] = match (&reference, argument_name.as_str()) {
            (Reference::Prompt(p), "arg1" | "arg2") if p == "test_prompt_with_arguments" => {
                &["paris", "park", "party", "parade", "pasta"]
            }
            (Reference::ResourceTemplate(t), "id") if t == "test://template/{id}/data" => {
                &["1", "2", "3", "123"]
            }
            _ => &[],
        };
        let values: Vec<String> = candidates
            .iter()
            .filter(|c| c.starts_with(&argument_value))
            .map(|c| c.to_string())
            .collect();
        Ok(CompletionResult {
            total: Some(values.len() as u32),
            values,
            has_more: false,
        })
    }
}

export!(Fixture);
