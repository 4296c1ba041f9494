//! `notes`: a plugin that keeps the caller's notes in a downstream API, reached only through
//! the host's `downstream` capability (written with `portcullis-sdk`).
//!
//! The plugin names the logical service `notes` and a path; the host confines the request to
//! the service the operator configured and attaches a token it obtained by RFC 8693 token
//! exchange — for this caller, for that API, naming the gateway as the actor. The plugin
//! never sees a token. See `examples/notes.toml` and `examples/notes-api/`.

use portcullis_sdk::downstream::{DownstreamError, Request};
use portcullis_sdk::prelude::*;

/// The logical service name the operator grants this plugin.
const SERVICE: &str = "notes";

/// The arguments of `notes.add`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddNote {
    /// The note
    #[schemars(length(min = 1, max = 1000))]
    text: String,
}

/// What a model needs to hear when the notes API cannot be reached.
fn explain(e: &DownstreamError) -> String {
    match e {
        DownstreamError::UnknownService(m) | DownstreamError::NotGranted(m) => {
            format!("the gateway is not configured for notes: {m}")
        }
        DownstreamError::Credential(m) => {
            format!("could not get a credential for the notes API: {m}")
        }
        DownstreamError::Blocked(m) => format!("the request was blocked: {m}"),
        DownstreamError::Timeout => "the notes API did not answer in time".into(),
        DownstreamError::TooLarge => "the note or the answer is too large".into(),
        DownstreamError::Transport(m) => format!("the notes API is unreachable: {m}"),
    }
}

/// Send `request` to the notes API; every failure becomes an `isError` result the model can
/// act on, and a JSON object answer is also the structured content.
fn call(request: Request) -> Result<Output> {
    let response = match request.send(SERVICE) {
        Ok(r) => r,
        Err(e) => return Ok(Output::error(explain(&e))),
    };
    let text = response.text();
    if !(200..300).contains(&response.status) {
        return Ok(Output::error(format!(
            "the notes API answered HTTP {}: {text}",
            response.status
        )));
    }
    let output = Output::text(text);
    Ok(match response.json::<serde_json::Value>() {
        Ok(value) if value.is_object() => output.structured(&value),
        _ => output,
    })
}

fn list(_ctx: &Context, _: NoArgs) -> Result<Output> {
    call(Request::get("/notes"))
}

fn add(_ctx: &Context, args: AddNote) -> Result<Output> {
    if args.text.trim().is_empty() {
        return Err(Error::invalid("`text` must not be blank"));
    }
    call(Request::post("/notes").body("text/plain", args.text))
}

/// `notes://{id}`: one note, as the notes API has it; a note it does not have is MCP's
/// resource-not-found (-32002), not a failure.
fn note(_ctx: &Context, vars: &portcullis_sdk::resource::UriVars) -> Result<Contents> {
    let id = vars.get("id").unwrap_or_default();
    let response = Request::get(&format!("/notes/{id}"))
        .send(SERVICE)
        .map_err(|e| Error::failed(explain(&e)))?;
    match response.status {
        404 => Err(Error::NotFound),
        200..300 => Ok(Contents::text(response.text()).mime_type("text/plain")),
        status => Err(Error::failed(format!(
            "the notes API answered HTTP {status}"
        ))),
    }
}

/// The arguments of the `notes.summarise` prompt.
#[derive(Deserialize, JsonSchema)]
struct Summarise {
    /// How to summarise: brief or bullets
    style: Option<String>,
}

fn summarise(_ctx: &Context, args: Summarise) -> Result<Vec<Message>> {
    let style = args.style.unwrap_or_else(|| "brief".into());
    Ok(vec![Message::user(format!(
        "Summarise my notes ({style}); read them with notes.list."
    ))])
}

fn plugin() -> Plugin {
    Plugin::new()
        .template(
            ResourceTemplate::new("notes://{id}", "note", note)
                .title("A note")
                .scopes(["notes:read"]),
        )
        .prompt(
            Prompt::new("notes.summarise", summarise).complete("style", |_, prefix| {
                ["brief", "bullets"]
                    .into_iter()
                    .filter(|s| s.starts_with(prefix))
                    .map(String::from)
                    .collect()
            }),
        )
        .tool(
            Tool::new("notes.list", list)
                .title("List my notes")
                .description("List the caller's notes, kept in the notes API.")
                .scopes(["notes:read"])
                .read_only()
                .open_world(true),
        )
        .tool(
            Tool::new("notes.add", add)
                .title("Add a note")
                .description("Add a note for the caller in the notes API.")
                .scopes(["notes:write"])
                .additive()
                .open_world(true),
        )
}

portcullis_sdk::export!(plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_sdk::downstream::Response;
    use portcullis_sdk::testing::TestHost;
    use serde_json::json;

    #[test]
    fn adding_posts_the_text_to_the_notes_service() {
        let mut host = TestHost::new().downstream(SERVICE, |req| {
            assert_eq!((req.method(), req.path()), ("POST", "/notes"));
            Ok(Response::with_json(200, &json!({"count": 1})))
        });
        let r = host
            .call_tool(&plugin(), "notes.add", json!({"text": "buy milk"}))
            .unwrap();
        assert_eq!(r.structured, Some(json!({"count": 1})));
        assert_eq!(host.requests()[0].1.body_bytes(), Some(&b"buy milk"[..]));
    }

    /// The plugin over MCP, in-process, as the gateway serves it: the harness checks what the
    /// gateway checks (the note's length bound, before the tool runs).
    #[test]
    fn over_mcp_in_process() {
        use portcullis_sdk::testing::McpTestClient;
        let host = TestHost::new().downstream(SERVICE, |req| match req.path() {
            "/notes/1" => Ok(Response::new(200, "buy milk")),
            _ => Ok(Response::new(404, "")),
        });
        let mut client = McpTestClient::with_host(plugin(), host);
        let tools = client.request("tools/list", json!({}));
        let add = &tools["result"]["tools"][1];
        assert_eq!(
            add["_meta"]["dev.portcullis/requiredScopes"],
            json!(["notes:write"])
        );
        assert_eq!(
            add["annotations"],
            json!({"readOnlyHint": false, "destructiveHint": false, "openWorldHint": true})
        );
        let read = client.request("resources/read", json!({"uri": "notes://1"}));
        assert_eq!(read["result"]["contents"][0]["text"], "buy milk");
        let missing = client.request("resources/read", json!({"uri": "notes://2"}));
        assert_eq!(missing["error"]["code"], -32002);
        let too_long = client.request(
            "tools/call",
            json!({"name": "notes.add", "arguments": {"text": "x".repeat(1001)}}),
        );
        assert_eq!(too_long["result"]["isError"], true);
        assert!(
            too_long["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("is longer than 1000 characters"),
            "{too_long}"
        );
        let done = client.request(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "notes.summarise"},
                   "argument": {"name": "style", "value": "bu"}}),
        );
        assert_eq!(done["result"]["completion"]["values"], json!(["bullets"]));
        let prompt = client.request("prompts/get", json!({"name": "notes.summarise"}));
        assert!(
            prompt["result"]["messages"][0]["content"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Summarise my notes (brief)")
        );
    }

    #[test]
    fn failures_tell_the_model_what_happened() {
        let mut host = TestHost::new().downstream(SERVICE, |_| {
            Err(DownstreamError::Credential("invalid_target".into()))
        });
        let r = host.call_tool(&plugin(), "notes.list", json!({})).unwrap();
        assert!(r.is_error);
        assert_eq!(
            r.text(),
            "could not get a credential for the notes API: invalid_target"
        );
        let mut down = TestHost::new().downstream(SERVICE, |_| Ok(Response::new(503, "busy")));
        let r = down.call_tool(&plugin(), "notes.list", json!({})).unwrap();
        assert_eq!(r.text(), "the notes API answered HTTP 503: busy");
    }
}
