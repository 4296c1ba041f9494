//! Tool schemas enforced by the host (#17): arguments that break a tool's `inputSchema` never
//! reach the plugin, and structured output that breaks its `outputSchema` never reaches the
//! client.

use serde_json::json;

use crate::support::{BinaryGateway, Client, TestGateway, plugin, toml_path};

fn config() -> String {
    format!(
        r#"
        [sandbox]
        max_instances = 8
        [auth]
        mode = "none"

        [[tenant]]
        id = "t"
        plugins = [{hello}, {probe}]
        "#,
        hello = toml_path(&plugin("hello")),
        probe = toml_path(&plugin("probe")),
    )
}

/// `hello.greet` takes `{"name": string}` and nothing else (`additionalProperties: false`). Each
/// bad call gets an `isError` result naming the violation, and the plugin is never
/// instantiated for it (its own answers would differ: "Hello, a!" for the extra property).
#[tokio::test]
async fn arguments_that_break_the_input_schema_never_reach_the_plugin() {
    let gw = TestGateway::from_toml(&config()).await;
    let mut c = Client::modern(&gw.url("/mcp"));
    let before = gw.plugin_instances();
    for (arguments, violation) in [
        (json!({}), "at `/`: \"name\" is a required property"),
        (
            json!({"name": 42}),
            "at `/name`: value is not of type \"string\" (got 42)",
        ),
        // `style` is a Rust enum with documented variants: a `oneOf` of constants, refused
        // with the allowed values named (#30).
        (
            json!({"name": "a", "style": "loud"}),
            "at `/style`: must be one of \"plain\", \"warm\" (got \"loud\")",
        ),
        (
            json!({"name": "a", "admin": true}),
            "Additional properties are not allowed ('admin' was unexpected)",
        ),
    ] {
        let r = c.call_tool("hello.greet", arguments.clone()).await;
        assert!(r.is_error(), "{arguments}: {r:?}");
        let text = r.text();
        assert!(
            text.starts_with("Invalid arguments for tool `hello.greet`: ")
                && text.contains(violation),
            "{arguments}: {text}"
        );
    }
    assert_eq!(
        gw.plugin_instances(),
        before,
        "no bad call reached the plugin"
    );
    let ok = c.call_tool("hello.greet", json!({"name": "a"})).await;
    assert_eq!(ok.text(), "Hello, a!");
    assert_eq!(gw.plugin_instances(), before + 1);
    let warm = c
        .call_tool("hello.greet", json!({"name": "a", "style": "warm"}))
        .await;
    assert_eq!(warm.text(), "Hello there, a. Good to see you!");
}

/// `probe.shaped` declares an output schema `{"count": integer}` (required, nothing else) and
/// returns whatever it is given. A matching result passes; a wrong type, an extra property or
/// no structured content at all become an `isError` result (the bad value never reaches the
/// client) and a warning in the gateway's log naming the plugin and the violation.
#[tokio::test]
async fn output_that_breaks_the_output_schema_never_reaches_the_client() {
    let gw = BinaryGateway::start(&config(), &[]).await;
    let mut c = Client::modern(&format!("{}/mcp", gw.base));
    let good = c
        .call_tool("probe.shaped", json!({"structured": {"count": 3}}))
        .await;
    assert!(!good.is_error(), "{good:?}");
    assert_eq!(good.result()["structuredContent"], json!({"count": 3}));
    for arguments in [
        json!({"structured": {"count": "secret-value"}}),
        json!({"structured": {"count": 1, "leak": "secret-value"}}),
        json!({}),
    ] {
        let r = c.call_tool("probe.shaped", arguments.clone()).await;
        assert!(r.is_error(), "{arguments}: {r:?}");
        assert!(r.result().get("structuredContent").is_none(), "{r:?}");
        let text = r.text();
        assert!(
            text.contains("does not match its outputSchema") && !text.contains("secret-value"),
            "{arguments}: {text}"
        );
    }
    let log = gw.stop().await;
    let faults: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("plugin fault: a result does not match the tool's outputSchema"))
        .collect();
    assert_eq!(faults.len(), 3, "{log}");
    assert!(
        faults
            .iter()
            .all(|l| l.contains("plugin=probe") && l.contains("tool=\"probe.shaped\"")),
        "{faults:?}"
    );
    assert!(faults[0].contains("at `/count`") && faults[1].contains("'leak' was unexpected"));
    assert!(faults[2].contains("no structuredContent"));
    assert!(
        !log.contains("secret-value"),
        "values are masked in the log"
    );
}
