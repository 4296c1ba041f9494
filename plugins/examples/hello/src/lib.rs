//! `hello`: the smallest useful Portcullis plugin, written with `portcullis-sdk`. Copy this
//! crate (or run `portcullis new rust NAME`) to start your own.
//!
//! A tool is a function from a typed argument struct to an output. The SDK derives the JSON
//! Schemas from the types, deserialises the arguments before the function runs (the gateway
//! has already checked them against the schema), and turns the result into MCP content. Each
//! call runs in a fresh instance, so keep no state in statics.
//!
//! Build: `cargo xtask build-plugins` (or `cargo build --release --target wasm32-wasip2` in
//! `plugins/`), then point a tenant's `plugins` list at `target/plugins/hello.wasm`.
//! Test: `cargo test -p hello` (natively, through `portcullis_sdk::testing::TestHost`).

use portcullis_sdk::log::{self, Level};
use portcullis_sdk::prelude::*;

/// The arguments of `hello.greet`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Greet {
    /// Who to greet
    name: String,
    /// How warmly
    #[serde(default)]
    style: Style,
}

/// How `hello.greet` greets. Documented variants become a `oneOf` of constants in the schema
/// (each with its description); a value outside them is refused by the gateway with the
/// allowed values named.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
enum Style {
    /// "Hello, NAME!"
    #[default]
    Plain,
    /// "Hello there, NAME. Good to see you!"
    Warm,
}

fn greet(_ctx: &Context, args: Greet) -> Result<String> {
    // Goes to the client as notifications/message if it asked for info-level logs.
    log::log(
        Level::Info,
        Some("hello"),
        &format!("greeting {}", args.name),
    );
    Ok(match args.style {
        Style::Plain => format!("Hello, {}!", args.name),
        Style::Warm => format!("Hello there, {}. Good to see you!", args.name),
    })
}

/// Who the gateway says is calling: `hello.whoami`'s structured output (its schema becomes
/// the tool's `outputSchema`).
#[derive(Serialize, JsonSchema)]
struct WhoAmI {
    tenant: String,
    issuer: Option<String>,
    subject: Option<String>,
    scopes: Vec<String>,
}

fn whoami(ctx: &Context, _: NoArgs) -> Result<Json<WhoAmI>> {
    Ok(Json(WhoAmI {
        tenant: ctx.tenant().into(),
        issuer: ctx.issuer().map(Into::into),
        subject: ctx.subject().map(Into::into),
        scopes: ctx.scopes().to_vec(),
    }))
}

/// The arguments of `hello.report`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Report {
    /// How long the report takes, in seconds (at most 300)
    #[schemars(range(max = 300))]
    seconds: u32,
}

/// A slow tool, run as an MCP Task for clients that support tasks: they get a task id at once,
/// poll it (each `progress` call becomes its status message) and read the result; cancelling
/// the task stops this instance wherever it is. Clients without task support wait inline.
fn report(ctx: &Context, args: Report) -> Result<String> {
    let seconds = args.seconds.min(300);
    for done in 0..seconds {
        let message = format!("{done} of {seconds} s");
        ctx.progress(f64::from(done), Some(f64::from(seconds)), Some(&message));
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    Ok(format!("The report took {seconds} s."))
}

/// The plugin: its tools, with the scope a caller's token must carry (the gateway checks it
/// before calling us).
fn plugin() -> Plugin {
    Plugin::new()
        .tool(
            Tool::new("hello.greet", greet)
                .title("Greet someone")
                .description("Say hello to someone by name.")
                .scopes(["mcp:tools"])
                .read_only()
                .open_world(false),
        )
        .tool(
            Tool::new("hello.whoami", whoami)
                .title("Who am I?")
                .description(
                    "Report who the gateway says is calling (tenant, issuer, subject, scopes).",
                )
                .scopes(["mcp:tools"]),
        )
        .tool(
            Tool::new("hello.report", report)
                .title("Slow report")
                .description("Produce a report that takes a while (runs as an MCP Task).")
                .scopes(["mcp:tools"])
                .read_only()
                .task(TaskSupport::Optional, TaskInput::InTask),
        )
}

portcullis_sdk::export!(plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_sdk::testing::TestHost;
    use serde_json::json;

    #[test]
    fn greets_and_logs() {
        let mut host = TestHost::new();
        let r = host
            .call_tool(&plugin(), "hello.greet", json!({"name": "Ada"}))
            .unwrap();
        assert_eq!(r.text(), "Hello, Ada!");
        assert_eq!(host.logs()[0].message, "greeting Ada");
        assert_eq!(host.logs()[0].logger.as_deref(), Some("hello"));
    }

    #[test]
    fn refuses_arguments_it_cannot_read() {
        let mut host = TestHost::new();
        let e = host
            .call_tool(&plugin(), "hello.greet", json!({"name": 7}))
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArguments(_)), "{e}");
    }

    /// The test host checks what the gateway checks: a schema bound serde does not see, and
    /// structured output against the declared outputSchema.
    #[test]
    fn the_harness_refuses_what_the_gateway_would() {
        let mut host = TestHost::new();
        let e = host
            .call_tool(&plugin(), "hello.report", json!({"seconds": 500}))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("at `/seconds`: 500 is greater than the maximum of 300"),
            "{e}"
        );
        #[derive(Serialize, JsonSchema)]
        struct Score {
            #[schemars(range(max = 10))]
            points: u32,
        }
        let broken = Plugin::new().tool(Tool::new("t.score", |_: &Context, _: NoArgs| {
            Ok(Json(Score { points: 11 }))
        }));
        let e = host.call_tool(&broken, "t.score", json!({})).unwrap_err();
        assert!(
            e.to_string().contains("does not match its outputSchema"),
            "{e}"
        );
    }

    #[test]
    fn reports_the_caller() {
        let mut host = TestHost::new().subject("ada").scopes(["mcp:tools"]);
        let r = host
            .call_tool(&plugin(), "hello.whoami", json!({}))
            .unwrap();
        assert_eq!(
            r.structured.unwrap(),
            json!({"tenant": "test", "issuer": "https://issuer.test", "subject": "ada", "scopes": ["mcp:tools"]})
        );
    }

    #[test]
    fn the_report_reports_progress_and_runs_as_a_task() {
        let mut host = TestHost::new();
        let r = host
            .call_tool(&plugin(), "hello.report", json!({"seconds": 1}))
            .unwrap();
        assert_eq!(r.text(), "The report took 1 s.");
        assert_eq!(host.progress()[0].2.as_deref(), Some("0 of 1 s"));
        let tasks: Vec<String> = plugin()
            .describe_task_tools()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(tasks, ["hello.report"]);
    }

    #[test]
    fn schemas_come_from_the_types() {
        let tools = plugin().describe_tools();
        let input: serde_json::Value = serde_json::from_str(&tools[0].input_schema).unwrap();
        assert_eq!(input["required"], json!(["name"]));
        assert_eq!(input["additionalProperties"], false);
        assert_eq!(input["properties"]["name"]["description"], "Who to greet");
        assert!(tools[1].output_schema.is_some());
    }
}
