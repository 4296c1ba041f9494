//! Tools: a name, a typed handler and its schemas, and what a handler may return.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::exports::portcullis::plugin::approvals;
use crate::bindings::exports::portcullis::plugin::tasks;
use crate::bindings::exports::portcullis::plugin::tools as wit;
use crate::bindings::portcullis::plugin::types;
use crate::context::Context;
use crate::error::{Error, Result};
pub use tasks::{TaskInput, TaskSupport};

pub use types::Content;

type Handler = Box<dyn Fn(&Context, &str) -> Result<wit::ToolResult>>;

/// One tool.
pub struct Tool {
    pub(crate) name: String,
    title: Option<String>,
    description: String,
    input_schema: fn() -> String,
    output_schema: fn() -> Option<String>,
    annotations: wit::ToolAnnotations,
    scopes: Vec<String>,
    /// How it runs as an MCP Task, if it may.
    task: Option<(TaskSupport, TaskInput)>,
    /// What approving one of its calls takes, if a person must.
    approval: Option<Approval>,
    pub(crate) handler: Handler,
}

/// What approving one call of a tool takes (RFC 9396 Rich Authorization Requests): see
/// [`Tool::approval`]. By default an approval binds the digest of all arguments, authorizes
/// one call, and may be used within 300 seconds of its token being issued.
#[derive(Debug, Clone)]
pub struct Approval {
    detail_type: String,
    bind: Vec<String>,
    single_use: bool,
    max_age_secs: u32,
}

impl Approval {
    /// An approval carried as `authorization_details` of type `detail_type` (e.g.
    /// `payment_refund`; `[A-Za-z0-9_.:/-]{1,128}`).
    pub fn new(detail_type: &str) -> Self {
        Self {
            detail_type: detail_type.into(),
            bind: Vec::new(),
            single_use: true,
            max_age_secs: 300,
        }
    }

    /// Bind these arguments' values (the person approves them; the others may change).
    #[must_use]
    pub fn bind<S: Into<String>>(mut self, arguments: impl IntoIterator<Item = S>) -> Self {
        self.bind = arguments.into_iter().map(Into::into).collect();
        self
    }

    /// One approval may authorize the same call more than once (within its age).
    #[must_use]
    pub fn reusable(mut self) -> Self {
        self.single_use = false;
        self
    }

    /// How long after its token was issued an approval may be used (1 to 86400 seconds).
    #[must_use]
    pub fn max_age_secs(mut self, secs: u32) -> Self {
        self.max_age_secs = secs;
        self
    }
}

impl Tool {
    /// A tool named `name` (`[A-Za-z0-9_.-]{1,128}`, unique in the tenant; prefix it with the
    /// plugin's name) run by `handler`. The input schema is `A`'s; for a [`Json`] output the
    /// output schema is its type's.
    pub fn new<A, O, F>(name: &str, handler: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + 'static,
        O: IntoOutput + 'static,
        F: Fn(&Context, A) -> Result<O> + 'static,
    {
        let handler: Handler = Box::new(move |ctx, arguments| {
            let args: A = serde_json::from_str(arguments)
                .map_err(|e| Error::InvalidArguments(e.to_string()))?;
            handler(ctx, args).map(IntoOutput::into_result)
        });
        Self {
            name: name.into(),
            title: None,
            description: String::new(),
            input_schema: schema_text::<A>,
            output_schema: O::output_schema,
            annotations: wit::ToolAnnotations {
                title: None,
                read_only_hint: None,
                destructive_hint: None,
                idempotent_hint: None,
                open_world_hint: None,
            },
            scopes: Vec::new(),
            task: None,
            approval: None,
            handler,
        }
    }

    /// A person must approve each call of this tool: the gateway runs it only for a caller
    /// whose token carries `authorization_details` authorizing exactly this call (its type,
    /// this tool, the caller, the bound argument values); other callers get 403
    /// `insufficient_authorization` naming the details to ask their authorization server for.
    /// The handler sees what was approved in [`Context::claim`]`("authorization_details")`.
    /// The operator's settings may replace the rule.
    #[must_use]
    pub fn approval(mut self, approval: Approval) -> Self {
        self.approval = Some(approval);
        self
    }

    pub(crate) fn describe_approval(&self) -> Option<approvals::ApprovalRule> {
        self.approval.as_ref().map(|a| approvals::ApprovalRule {
            tool: self.name.clone(),
            detail_type: a.detail_type.clone(),
            bind: a.bind.clone(),
            single_use: a.single_use,
            max_age_secs: a.max_age_secs,
        })
    }

    /// Run this tool as an MCP Task for clients that support tasks: the client gets a task id
    /// at once and polls for the result, so the call may take minutes (the gateway's
    /// `tasks.deadline_ms`). [`Context::progress`] becomes the task's status message, and a
    /// cancelled task stops the instance. `TaskSupport::Required` refuses clients without task
    /// support; `TaskInput::BeforeTask` answers questions asked at once before the task exists.
    #[must_use]
    pub fn task(mut self, support: TaskSupport, input: TaskInput) -> Self {
        self.task = Some((support, input));
        self
    }

    pub(crate) fn describe_task(&self) -> Option<tasks::TaskTool> {
        self.task.map(|(support, input)| tasks::TaskTool {
            name: self.name.clone(),
            support,
            input,
        })
    }

    item_setters!("tool");

    /// Hint: the tool changes nothing (and so is idempotent and not destructive).
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.annotations.read_only_hint = Some(true);
        self.annotations.destructive_hint = Some(false);
        self.annotations.idempotent_hint = Some(true);
        self
    }

    /// Hint: the tool may destroy data.
    #[must_use]
    pub fn destructive(mut self) -> Self {
        self.annotations.read_only_hint = Some(false);
        self.annotations.destructive_hint = Some(true);
        self
    }

    /// Hint: the tool changes things but only adds (it neither deletes nor overwrites):
    /// `readOnlyHint: false`, `destructiveHint: false` (MCP's default for a tool that is not
    /// read-only is destructive).
    #[must_use]
    pub fn additive(mut self) -> Self {
        self.annotations.read_only_hint = Some(false);
        self.annotations.destructive_hint = Some(false);
        self
    }

    /// Hint: calling it twice with the same arguments does no more than once.
    #[must_use]
    pub fn idempotent(mut self) -> Self {
        self.annotations.idempotent_hint = Some(true);
        self
    }

    /// Hint: whether the tool reaches outside systems (`downstream` services).
    #[must_use]
    pub fn open_world(mut self, open: bool) -> Self {
        self.annotations.open_world_hint = Some(open);
        self
    }

    pub(crate) fn describe(&self) -> wit::Tool {
        let a = &self.annotations;
        let hinted = a.read_only_hint.is_some()
            || a.destructive_hint.is_some()
            || a.idempotent_hint.is_some()
            || a.open_world_hint.is_some();
        wit::Tool {
            name: self.name.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            input_schema: (self.input_schema)(),
            output_schema: (self.output_schema)(),
            annotations: hinted.then_some(wit::ToolAnnotations {
                title: None,
                read_only_hint: a.read_only_hint,
                destructive_hint: a.destructive_hint,
                idempotent_hint: a.idempotent_hint,
                open_world_hint: a.open_world_hint,
            }),
            required_scopes: self.scopes.clone(),
        }
    }
}

/// The arguments of a tool that takes none (and refuses any).
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// The JSON Schema of `T` as text (JSON Schema 2020-12, properties in declaration order,
/// without the type's name as `title`, and without Rust's numeric `format`s such as `uint64`,
/// which no JSON Schema client knows: their bounds are kept as `minimum`/`maximum`).
pub(crate) fn schema_text<T: JsonSchema>() -> String {
    let mut schema = schemars::schema_for!(T).to_value();
    if let Some(root) = schema.as_object_mut() {
        root.remove("title");
    }
    drop_rust_formats(&mut schema);
    serde_json::to_string(&schema).unwrap_or_else(|_| r#"{"type":"object"}"#.into())
}

/// Remove the `format`s schemars writes for Rust's number types, everywhere in `schema`.
fn drop_rust_formats(schema: &mut serde_json::Value) {
    const RUST_FORMATS: &[&str] = &[
        "int8", "int16", "int32", "int64", "int128", "int", "uint8", "uint16", "uint32", "uint64",
        "uint128", "uint", "float", "double",
    ];
    match schema {
        serde_json::Value::Object(map) => {
            if map
                .get("format")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|f| RUST_FORMATS.contains(&f))
            {
                map.remove("format");
            }
            map.values_mut().for_each(drop_rust_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_rust_formats),
        _ => {}
    }
}

/// What a tool handler may return.
pub trait IntoOutput {
    /// The `outputSchema` this output promises, if any.
    fn output_schema() -> Option<String> {
        None
    }

    /// The tool result.
    fn into_result(self) -> wit::ToolResult;
}

fn text_result(text: String) -> wit::ToolResult {
    wit::ToolResult {
        content: vec![Content::Text(text)],
        structured_content: None,
        is_error: false,
    }
}

impl IntoOutput for String {
    fn into_result(self) -> wit::ToolResult {
        text_result(self)
    }
}

impl IntoOutput for &'static str {
    fn into_result(self) -> wit::ToolResult {
        text_result(self.into())
    }
}

impl IntoOutput for Vec<Content> {
    fn into_result(self) -> wit::ToolResult {
        wit::ToolResult {
            content: self,
            structured_content: None,
            is_error: false,
        }
    }
}

/// Structured output: `structuredContent` (with the same JSON as text, for older clients),
/// and `T`'s schema as the tool's `outputSchema`.
pub struct Json<T>(pub T);

impl<T: Serialize + JsonSchema> IntoOutput for Json<T> {
    fn output_schema() -> Option<String> {
        Some(schema_text::<T>())
    }

    fn into_result(self) -> wit::ToolResult {
        match serde_json::to_string(&self.0) {
            Ok(json) => wit::ToolResult {
                content: vec![Content::Text(json.clone())],
                structured_content: Some(json),
                is_error: false,
            },
            Err(e) => Output::error(format!("the tool's output is not JSON: {e}")).into_result(),
        }
    }
}

/// Content blocks other than text, without spelling out the WIT records.
impl Content {
    /// An image: its bytes and media type (`image/png`).
    pub fn image(data: Vec<u8>, mime_type: &str) -> Self {
        Content::Image(types::Binary {
            data,
            mime_type: mime_type.into(),
        })
    }

    /// Audio: its bytes and media type (`audio/wav`).
    pub fn audio(data: Vec<u8>, mime_type: &str) -> Self {
        Content::Audio(types::Binary {
            data,
            mime_type: mime_type.into(),
        })
    }

    /// A link to a resource the client may read later (`resource_link`).
    pub fn link(uri: &str, name: &str) -> Self {
        Content::ResourceLink(types::ResourceLink {
            uri: uri.into(),
            name: name.into(),
            title: None,
            description: None,
            mime_type: None,
        })
    }

    /// A resource's contents embedded in the result (`resource`).
    pub fn embedded(uri: &str, contents: crate::resource::Contents) -> Self {
        Content::Resource(contents.into_wit(uri))
    }
}

/// Any result: content blocks, optional structured content, or an error the model sees.
pub struct Output {
    content: Vec<Content>,
    structured: Option<String>,
    is_error: bool,
}

impl Output {
    /// A text result.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: vec![Content::Text(text.into())],
            structured: None,
            is_error: false,
        }
    }

    /// A failure the model sees (`isError`), with a message telling it what to do.
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            is_error: true,
            ..Self::text(text)
        }
    }

    /// Add a content block.
    #[must_use]
    pub fn with(mut self, content: Content) -> Self {
        self.content.push(content);
        self
    }

    /// Add structured content (for a tool without an output schema).
    #[must_use]
    pub fn structured<T: Serialize>(mut self, value: &T) -> Self {
        self.structured = serde_json::to_string(value).ok();
        self
    }
}

impl IntoOutput for Output {
    fn into_result(self) -> wit::ToolResult {
        wit::ToolResult {
            content: self.content,
            structured_content: self.structured,
            is_error: self.is_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields in the order written, documented, with Rust's `uint`/`int` formats gone and
    /// their bounds kept.
    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code, reason = "only its schema is used")]
    struct Search {
        /// What to look for
        query: String,
        /// How many results
        limit: u64,
        offset: Option<i32>,
        /// Anything else
        all: bool,
    }

    #[test]
    fn schemas_keep_declaration_order_and_drop_rust_number_formats() {
        let schema: serde_json::Value = serde_json::from_str(&schema_text::<Search>()).unwrap();
        let names: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, ["query", "limit", "offset", "all"]);
        assert!(!schema.to_string().contains("\"format\""), "{schema}");
        assert_eq!(schema["properties"]["limit"]["minimum"], 0);
        assert!(schema.get("title").is_none());
    }

    #[derive(serde::Deserialize, JsonSchema)]
    struct Refund {
        amount: String,
        account: String,
        #[allow(dead_code, reason = "not bound, not read")]
        memo: Option<String>,
    }

    fn refund(ctx: &Context, r: Refund) -> Result<String> {
        let kind = ctx.claim("authorization_details").unwrap_or_default();
        Ok(format!("{} {} {}", r.amount, r.account, kind["type"]))
    }

    #[test]
    fn approvals_are_declared_and_checked_as_the_gateway_checks_them() {
        use crate::testing::TestHost;
        let plugin = |approval: Approval| {
            crate::Plugin::new().tool(Tool::new("pay.refund", refund).approval(approval))
        };
        let good = plugin(Approval::new("payment_refund").bind(["amount", "account"]));
        let rules = good.describe_approval_rules();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            (
                rules[0].tool.as_str(),
                rules[0].detail_type.as_str(),
                rules[0].bind.clone(),
                rules[0].single_use,
                rules[0].max_age_secs
            ),
            (
                "pay.refund",
                "payment_refund",
                vec!["amount".to_string(), "account".to_string()],
                true,
                300
            )
        );
        let mut host = TestHost::new().claim(
            "authorization_details",
            &serde_json::json!({"type": "payment_refund"}),
        );
        let args = serde_json::json!({"amount": "1.00", "account": "DE02"});
        let r = host.call_tool(&good, "pay.refund", args.clone()).unwrap();
        assert_eq!(r.text(), "1.00 DE02 \"payment_refund\"");
        let reusable = plugin(Approval::new("t").reusable().max_age_secs(600));
        assert!(!reusable.describe_approval_rules()[0].single_use);
        for (approval, problem) in [
            (Approval::new("a b"), "must match"),
            (
                Approval::new("t").bind(["amount", "amount"]),
                "binds `amount` twice",
            ),
            (
                Approval::new("t").bind(["iban"]),
                "binds `iban`, which the tool's inputSchema does not name",
            ),
            (
                Approval::new("t").max_age_secs(0),
                "max age must be 1 to 86400",
            ),
            (
                Approval::new("t").max_age_secs(86_401),
                "max age must be 1 to 86400",
            ),
            (
                Approval::new("t").bind((0..33).map(|i| format!("a{i}"))),
                "at most 32",
            ),
        ] {
            let e = host
                .call_tool(&plugin(approval), "pay.refund", args.clone())
                .unwrap_err();
            assert!(e.to_string().contains(problem), "{e}");
            assert!(
                e.to_string().contains("the gateway refuses this plugin"),
                "{e}"
            );
        }
    }
}
