//! The plugin's own tests, natively (no gateway): `cargo test`.

use portcullis_sdk::Error;
use portcullis_sdk::downstream::Response;
use portcullis_sdk::testing::{McpTestClient, TestHost};
use serde_json::{Value, json};

use super::*;

fn docs(host: TestHost) -> TestHost {
    host.downstream(DOCS, |req| match req.path() {
        "/a" => Ok(Response::new(200, "x yy zzz")),
        _ => Ok(Response::new(404, "")),
    })
}

#[test]
fn counts_and_logs() {
    let mut host = TestHost::new().subject("ada");
    let r = host
        .call_tool(
            &plugin(),
            "rswords.count",
            json!({"text": "a bb ccc", "min_length": 2}),
        )
        .unwrap();
    assert_eq!(r.structured, Some(json!({"words": 2, "longest": "ccc"})));
    assert_eq!(host.logs()[0].message, "counted 2 words for ada");
    assert_eq!(host.logs()[0].logger.as_deref(), Some("rs-words"));
}

#[test]
fn the_schema_carries_bounds_and_defaults_in_declaration_order() {
    let tools = plugin().describe_tools();
    let input: Value = serde_json::from_str(&tools[0].input_schema).unwrap();
    assert_eq!(input["required"], json!(["text"]));
    let names: Vec<&String> = input["properties"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["text", "min_length"]);
    assert_eq!(
        input["properties"]["min_length"],
        json!({"type": "integer", "minimum": 1, "maximum": 50, "default": 1,
               "description": "Shortest word counted"})
    );
}

#[test]
fn the_harness_refuses_what_the_gateway_would() {
    // An argument out of bounds, before the tool runs.
    let e = TestHost::new()
        .call_tool(
            &plugin(),
            "rswords.count",
            json!({"text": "a", "min_length": 0}),
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArguments(m) if m.contains("0 is less than the minimum of 1")),
        "{e}"
    );
    // The bug on purpose: NaN is written as null, which the output schema does not allow.
    let e = TestHost::new()
        .call_tool(&plugin(), "rswords.ratio", json!({"text": "", "of": "a"}))
        .unwrap_err();
    assert!(
        matches!(&e, Error::Failed(m) if m.contains("/ratio") && m.contains("null")),
        "{e}"
    );
}

#[test]
fn the_report_fetches_reports_progress_and_links_the_document() {
    let mut host = docs(TestHost::new());
    let r = host
        .call_tool(&plugin(), "rswords.report", json!({"path": "/a"}))
        .unwrap();
    assert_eq!(r.text(), "3 words");
    assert!(matches!(&r.content[1], Content::ResourceLink(l) if l.uri == "words://a"));
    assert_eq!(host.progress()[0], (1.0, Some(2.0), Some("fetched".into())));
    assert_eq!(host.resources_updated(), ["words://a"]);
    let e = host
        .call_tool(&plugin(), "rswords.fetch", json!({"path": "/gone"}))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the docs service answered HTTP 404 for /gone"
    );
}

#[test]
fn the_headline_asks_the_model_then_the_user() {
    let mut host = TestHost::new();
    let text = json!({"text": "the gateway checks every call"});
    let Err(Error::NeedInput(first)) = host.call_tool(&plugin(), "rswords.headline", text.clone())
    else {
        panic!("the model is asked first")
    };
    let drafted = json!({"role": "assistant", "model": "m",
                         "content": {"type": "text", "text": "Every call checked"}});
    host.answer("draft", &drafted, &first);
    let Err(Error::NeedInput(second)) = host.call_tool(&plugin(), "rswords.headline", text.clone())
    else {
        panic!("then the user")
    };
    assert_eq!(second.keys(), ["approve"]);
    assert_eq!(second.state(), Some("Every call checked"));
    let edited = json!({"action": "accept", "content": {"headline": "Every call, checked"}});
    host.answer("approve", &edited, &second);
    let r = host.call_tool(&plugin(), "rswords.headline", text).unwrap();
    assert_eq!(r.text(), "Every call, checked");
    // A client that cannot answer is told so, not asked.
    let r = TestHost::new()
        .client(ClientFeatures::empty())
        .call_tool(&plugin(), "rswords.headline", json!({"text": "t"}))
        .unwrap();
    assert!(r.is_error, "{}", r.text());
}

#[test]
fn publishing_changes_the_resource_list_and_embeds_the_document() {
    let mut host = TestHost::new().downstream(DOCS, |req| {
        assert_eq!((req.method(), req.path()), ("PUT", "/draft"));
        Ok(Response::new(201, ""))
    });
    let r = host
        .call_tool(
            &plugin(),
            "rswords.publish",
            json!({"name": "draft", "text": "a b"}),
        )
        .unwrap();
    assert_eq!(r.text(), "published words://draft");
    assert!(
        matches!(&r.content[1], Content::Resource(c) if c.uri == "words://draft"),
        "{:?}",
        r.content
    );
    assert_eq!(host.lists_changed(), [(false, false, true)]);
    let e = TestHost::new()
        .call_tool(
            &plugin(),
            "rswords.publish",
            json!({"name": "../x", "text": "a"}),
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArguments(m) if m.contains("/name")),
        "{e}"
    );
}

#[test]
fn documents_and_the_logo_read_as_the_client_sees_them() {
    let mut host = docs(TestHost::new());
    let read = host.read_resource(&plugin(), "words://a").unwrap();
    assert_eq!(read[0].text.as_deref(), Some("x\nyy\nzzz"));
    assert_eq!(read[0].mime_type.as_deref(), Some("text/plain"));
    assert!(matches!(
        host.read_resource(&plugin(), "words://gone"),
        Err(Error::NotFound)
    ));
    let logo = host.read_resource(&plugin(), "logo://rswords").unwrap();
    assert_eq!(logo[0].blob.as_deref(), Some(&LOGO[..]));
}

/// The plugin over MCP, in-process, as the gateway serves it (2026-07-28: input requests
/// come back as `inputRequests`, answered with `inputResponses` and the `requestState`).
#[test]
fn over_mcp_in_process() {
    let mut client = McpTestClient::with_host(plugin(), docs(TestHost::new()));
    let tools = client.request("tools/list", json!({}));
    let report = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "rswords.report")
        .unwrap();
    assert_eq!(
        report["_meta"]["io.modelcontextprotocol/tasks"]["taskSupport"],
        "optional"
    );
    let logo = client.request("tools/call", json!({"name": "rswords.logo"}));
    assert_eq!(logo["result"]["content"][0]["type"], "image", "{logo}");
    assert_eq!(
        logo["result"]["content"][0]["mimeType"], "image/png",
        "{logo}"
    );
    let listed = client.request("resources/list", json!({}));
    assert_eq!(listed["result"]["resources"][0]["uri"], "logo://rswords");
    let read = client.request("resources/read", json!({"uri": "logo://rswords"}));
    assert!(read["result"]["contents"][0]["blob"].is_string(), "{read}");
    let read = client.request("resources/read", json!({"uri": "words://a"}));
    assert_eq!(read["result"]["contents"][0]["text"], "x\nyy\nzzz");
    let missing = client.request("resources/read", json!({"uri": "words://gone"}));
    assert_eq!(missing["error"]["code"], -32002);
    let prompt = client.request(
        "prompts/get",
        json!({"name": "rswords.summarise", "arguments": {"text": "t"}}),
    );
    assert_eq!(
        prompt["result"]["messages"][0]["content"]["text"],
        "Summarise this (brief):\nt"
    );
    let done = client.request(
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "rswords.summarise"},
               "argument": {"name": "style", "value": "bu"}}),
    );
    assert_eq!(done["result"]["completion"]["values"], json!(["bullets"]));
    let call = json!({"name": "rswords.roots", "arguments": {}});
    let asked = client.request("tools/call", call.clone());
    assert_eq!(
        asked["result"]["inputRequests"]["roots"]["method"], "roots/list",
        "{asked}"
    );
    let mut retry = call;
    retry["inputResponses"] = json!({"roots": {"roots": [{"uri": "file:///work"}]}});
    retry["requestState"] = asked["result"]["requestState"].clone();
    let answered = client.request("tools/call", retry);
    assert_eq!(answered["result"]["content"][0]["text"], "file:///work");
}
