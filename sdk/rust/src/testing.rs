//! Test plugin code natively (`cargo test`), without a gateway: call tools, resources and
//! prompts with a chosen identity, scopes, configuration and downstream answers, and see what
//! the plugin logged and requested.
//!
//! ```
//! use portcullis_sdk::prelude::*;
//! use portcullis_sdk::testing::TestHost;
//!
//! fn plugin() -> Plugin {
//!     Plugin::new().tool(Tool::new("t.who", |ctx: &Context, _: NoArgs| {
//!         portcullis_sdk::log::info("asked");
//!         Ok(format!("{}", ctx.subject().unwrap_or("nobody")))
//!     }))
//! }
//!
//! let mut host = TestHost::new().subject("ada");
//! let r = host.call_tool(&plugin(), "t.who", serde_json::json!({})).unwrap();
//! assert_eq!(r.text(), "ada");
//! assert_eq!(host.logs()[0].message, "asked");
//! ```
//!
//! Like the gateway, [`TestHost::call_tool`] checks the arguments against the tool's
//! `inputSchema` before the tool runs (constraints serde does not see, such as `minimum`,
//! refused as [`Error::InvalidArguments`]) and structured output against its `outputSchema`
//! after (a mismatch is an [`Error::Failed`] naming it: the gateway would refuse that result).
//!
//! Natively, host imports made outside a `TestHost` call panic with a clear message (a
//! normal, catchable test failure); in WebAssembly this module is inert.

use std::collections::HashMap;

use serde_json::Value;

use crate::Plugin;
use crate::bindings::exports::portcullis::plugin::{completion, prompts, resources, tools};
use crate::bindings::portcullis::plugin::types::{
    CallContext, ClientFeatures, Content, Continuation, InputResponse,
};
use crate::downstream::{DownstreamError, Request, Response};
use crate::error::{Error, InputNeeded};
use crate::log::Level;

type Stub = Box<dyn Fn(&Request) -> Result<Response, DownstreamError>>;

/// One log line a plugin wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// Its logger, if named.
    pub logger: Option<String>,
    /// The message.
    pub message: String,
}

/// What a test host records and answers.
#[derive(Default)]
struct Recorder {
    logs: Vec<LogLine>,
    progress: Vec<(f64, Option<f64>, Option<String>)>,
    requests: Vec<(String, Request)>,
    stubs: HashMap<String, Stub>,
    resources_updated: Vec<String>,
    lists_changed: Vec<(bool, bool, bool)>,
}

/// One resource's contents, as read: text or bytes, with the media type the plugin gave.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadContents {
    /// The URI read.
    pub uri: String,
    /// The media type, if given.
    pub mime_type: Option<String>,
    /// The text, for text contents.
    pub text: Option<String>,
    /// The bytes, for binary contents.
    pub blob: Option<Vec<u8>>,
}

impl From<crate::bindings::portcullis::plugin::types::ResourceContents> for ReadContents {
    fn from(c: crate::bindings::portcullis::plugin::types::ResourceContents) -> Self {
        use crate::bindings::portcullis::plugin::types::ResourceBody;
        let (text, blob) = match c.body {
            ResourceBody::Text(t) => (Some(t), None),
            ResourceBody::Blob(b) => (None, Some(b)),
        };
        Self {
            uri: c.uri,
            mime_type: c.mime_type,
            text,
            blob,
        }
    }
}

/// A stand-in for the gateway, for native tests.
pub struct TestHost {
    context: CallContext,
    recorder: Option<Recorder>,
    answers: Vec<InputResponse>,
    state: Option<String>,
}

/// A finished tool call, as the client would see it.
#[derive(Debug, Clone)]
pub struct CallResult {
    /// Content blocks.
    pub content: Vec<Content>,
    /// Structured content, parsed.
    pub structured: Option<Value>,
    /// Whether the tool reported an error.
    pub is_error: bool,
}

impl CallResult {
    /// The text blocks, joined by newlines.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|c| match c {
                Content::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// Tenant `test`, issuer `https://issuer.test`, subject `tester`, no scopes, no
    /// configuration, a client that can answer every kind of input request.
    pub fn new() -> Self {
        Self {
            context: CallContext {
                tenant: "test".into(),
                issuer: Some("https://issuer.test".into()),
                subject: Some("tester".into()),
                client_id: None,
                scopes: Vec::new(),
                claims: Vec::new(),
                request_id: "1".into(),
                trace_parent: None,
                client: ClientFeatures::all(),
                config: Vec::new(),
            },
            recorder: Some(Recorder::default()),
            answers: Vec::new(),
            state: None,
        }
    }

    /// The tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.context.tenant = tenant.into();
        self
    }

    /// The subject (`sub`).
    #[must_use]
    pub fn subject(mut self, subject: &str) -> Self {
        self.context.subject = Some(subject.into());
        self
    }

    /// The issuer.
    #[must_use]
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.context.issuer = Some(issuer.into());
        self
    }

    /// The caller's scopes.
    #[must_use]
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.context.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// A forwarded claim.
    #[must_use]
    pub fn claim(mut self, name: &str, value: &Value) -> Self {
        self.context.claims.push((name.into(), value.to_string()));
        self
    }

    /// An operator configuration value.
    #[must_use]
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.context.config.push((key.into(), value.into()));
        self
    }

    /// What the client can answer.
    #[must_use]
    pub fn client(mut self, features: ClientFeatures) -> Self {
        self.context.client = features;
        self
    }

    /// Answer requests to `service` with `stub` (unstubbed services are `unknown-service`).
    #[must_use]
    pub fn downstream(
        mut self,
        service: &str,
        stub: impl Fn(&Request) -> Result<Response, DownstreamError> + 'static,
    ) -> Self {
        self.recorder_mut()
            .stubs
            .insert(service.into(), Box::new(stub));
        self
    }

    /// The client's answer to the input request `key` (JSON), for the next call; with the
    /// state the plugin kept, as the gateway would pass it back.
    pub fn answer(&mut self, key: &str, value: &Value, needed: &InputNeeded) {
        self.answers.push(InputResponse {
            key: key.into(),
            value: value.to_string(),
        });
        self.state.clone_from(&needed.state);
    }

    /// Everything the plugin logged so far.
    pub fn logs(&self) -> &[LogLine] {
        &self.recorder().logs
    }

    /// Progress reports so far: (progress, total, message).
    pub fn progress(&self) -> &[(f64, Option<f64>, Option<String>)] {
        &self.recorder().progress
    }

    /// Downstream requests so far: (service, request).
    pub fn requests(&self) -> &[(String, Request)] {
        &self.recorder().requests
    }

    /// Resources the plugin said changed.
    pub fn resources_updated(&self) -> &[String] {
        &self.recorder().resources_updated
    }

    /// The lists the plugin said changed, one `(tools, prompts, resources)` per
    /// notification ([`crate::log::lists_changed`]).
    pub fn lists_changed(&self) -> &[(bool, bool, bool)] {
        &self.recorder().lists_changed
    }

    /// Call tool `name` with `arguments`. `Err` is what the gateway would turn into an error:
    /// [`Error::InvalidArguments`] and [`Error::Failed`] become `isError` results,
    /// [`Error::NeedInput`] an input request (answer with [`TestHost::answer`] and call
    /// again).
    pub fn call_tool(
        &mut self,
        plugin: &Plugin,
        name: &str,
        arguments: Value,
    ) -> Result<CallResult, Error> {
        checks::approval(plugin, name)?;
        checks::arguments(plugin, name, &arguments)?;
        let ctx = self.context.clone();
        let continuation = self.continuation();
        match self.with_host(|| {
            crate::guest::call_tool(plugin, ctx, name, &arguments.to_string(), continuation)
        }) {
            Ok(tools::CallOutcome::Done(r)) => {
                let result = CallResult {
                    structured: r
                        .structured_content
                        .as_deref()
                        .and_then(|s| serde_json::from_str(s).ok()),
                    content: r.content,
                    is_error: r.is_error,
                };
                checks::output(plugin, name, &result)?;
                Ok(result)
            }
            Ok(tools::CallOutcome::InputRequired(ir)) => Err(need_input(ir)),
            Err(tools::ToolError::UnknownTool) => {
                Err(Error::failed(format!("unknown tool `{name}`")))
            }
            Err(tools::ToolError::InvalidArguments(m)) => Err(Error::InvalidArguments(m)),
            Err(tools::ToolError::Failed(m)) => Err(Error::Failed(m)),
        }
    }

    /// Read the resource at `uri`: its contents (text or blob, with a media type), as the
    /// client would see them. A resource the plugin does not have is [`Error::NotFound`].
    pub fn read_resource(
        &mut self,
        plugin: &Plugin,
        uri: &str,
    ) -> Result<Vec<ReadContents>, Error> {
        let ctx = self.context.clone();
        let continuation = self.continuation();
        match self.with_host(|| crate::guest::read_resource(plugin, ctx, uri, continuation)) {
            Ok(resources::ReadOutcome::Done(c)) => {
                Ok(c.into_iter().map(ReadContents::from).collect())
            }
            Ok(resources::ReadOutcome::InputRequired(ir)) => Err(need_input(ir)),
            Err(resources::ResourceError::NotFound) => Err(Error::NotFound),
            Err(resources::ResourceError::Failed(m)) => Err(Error::Failed(m)),
        }
    }

    /// Render prompt `name` with string `arguments`: the messages' texts.
    pub fn get_prompt(
        &mut self,
        plugin: &Plugin,
        name: &str,
        arguments: &[(&str, &str)],
    ) -> Result<Vec<String>, Error> {
        Ok(self
            .get_prompt_messages(plugin, name, arguments)?
            .into_iter()
            .map(|(_, content)| match content {
                Content::Text(t) => t,
                _ => String::new(),
            })
            .collect())
    }

    /// Render prompt `name` with string `arguments`: each message's role and content.
    pub fn get_prompt_messages(
        &mut self,
        plugin: &Plugin,
        name: &str,
        arguments: &[(&str, &str)],
    ) -> Result<Vec<(prompts::Role, Content)>, Error> {
        let ctx = self.context.clone();
        let continuation = self.continuation();
        let arguments: Vec<(String, String)> = arguments
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        match self
            .with_host(|| crate::guest::get_prompt(plugin, ctx, name, &arguments, continuation))
        {
            Ok(prompts::GetOutcome::Done(r)) => Ok(r
                .messages
                .into_iter()
                .map(|m| (m.role, m.content))
                .collect()),
            Ok(prompts::GetOutcome::InputRequired(ir)) => Err(need_input(ir)),
            Err(prompts::PromptError::UnknownPrompt) => {
                Err(Error::failed(format!("unknown prompt `{name}`")))
            }
            Err(prompts::PromptError::InvalidArguments(m)) => Err(Error::InvalidArguments(m)),
            Err(prompts::PromptError::Failed(m)) => Err(Error::Failed(m)),
        }
    }

    /// Completions for `argument` of the prompt `name`, starting with `prefix`.
    pub fn complete_prompt(
        &mut self,
        plugin: &Plugin,
        name: &str,
        argument: &str,
        prefix: &str,
    ) -> Vec<String> {
        let reference = completion::Reference::Prompt(name.into());
        self.complete(plugin, &reference, argument, prefix)
    }

    /// Completions for the variable `argument` of the resource template `template`.
    pub fn complete_template(
        &mut self,
        plugin: &Plugin,
        template: &str,
        argument: &str,
        prefix: &str,
    ) -> Vec<String> {
        let reference = completion::Reference::ResourceTemplate(template.into());
        self.complete(plugin, &reference, argument, prefix)
    }

    fn complete(
        &mut self,
        plugin: &Plugin,
        reference: &completion::Reference,
        argument: &str,
        prefix: &str,
    ) -> Vec<String> {
        let ctx = self.context.clone();
        self.with_host(|| crate::guest::complete(plugin, ctx, reference, argument, prefix))
            .values
    }

    fn continuation(&mut self) -> Option<Continuation> {
        if self.answers.is_empty() && self.state.is_none() {
            return None;
        }
        Some(Continuation {
            responses: std::mem::take(&mut self.answers),
            state: self.state.take(),
        })
    }

    fn recorder(&self) -> &Recorder {
        self.recorder
            .as_ref()
            .expect("the recorder is back after each call")
    }

    fn recorder_mut(&mut self) -> &mut Recorder {
        self.recorder
            .as_mut()
            .expect("the recorder is back after each call")
    }

    /// Run `f` with this host answering the plugin's imports on this thread.
    fn with_host<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let recorder = self.recorder.take().expect("not re-entered");
        native::install(recorder);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        self.recorder = Some(native::uninstall());
        match result {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// What the gateway would do with an input request: ask the client (the test answers).
fn need_input(ir: crate::bindings::portcullis::plugin::types::InputRequired) -> Error {
    Error::NeedInput(InputNeeded {
        requests: ir.requests,
        state: ir.state,
    })
}

/// The host imports natively: answered by the thread's installed [`TestHost`].
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) mod native {
    use std::cell::RefCell;

    use super::{LogLine, Recorder};
    use crate::bindings::portcullis::plugin::{downstream, host};
    use crate::downstream::{DownstreamError, Request};

    thread_local! {
        static HOST: RefCell<Option<Recorder>> = const { RefCell::new(None) };
    }

    pub(super) fn install(recorder: Recorder) {
        HOST.with(|h| *h.borrow_mut() = Some(recorder));
    }

    pub(super) fn uninstall() -> Recorder {
        HOST.with(|h| h.borrow_mut().take()).unwrap_or_default()
    }

    fn with<R>(import: &str, f: impl FnOnce(&mut Recorder) -> R) -> R {
        HOST.with(|h| match h.borrow_mut().as_mut() {
            Some(recorder) => f(recorder),
            None => panic!(
                "the plugin called the host import `{import}` outside a gateway: in native tests, \
                 call it through portcullis_sdk::testing::TestHost"
            ),
        })
    }

    pub(crate) fn log(level: host::LogLevel, logger: Option<&str>, message: &str) {
        with("log", |r| {
            r.logs.push(LogLine {
                level,
                logger: logger.map(str::to_string),
                message: message.into(),
            });
        });
    }

    pub(crate) fn progress(progress: f64, total: Option<f64>, message: Option<&str>) {
        with("progress", |r| {
            r.progress
                .push((progress, total, message.map(str::to_string)));
        });
    }

    pub(crate) fn notify_lists_changed(kinds: host::ListKinds) {
        with("notify-lists-changed", |r| {
            r.lists_changed.push((
                kinds.contains(host::ListKinds::TOOLS),
                kinds.contains(host::ListKinds::PROMPTS),
                kinds.contains(host::ListKinds::RESOURCES),
            ));
        });
    }

    pub(crate) fn notify_resource_updated(uri: &str) {
        with("notify-resource-updated", |r| {
            r.resources_updated.push(uri.into());
        });
    }

    pub(crate) fn fetch(
        service: &str,
        request: &downstream::Request,
    ) -> Result<downstream::Response, downstream::Error> {
        let request = Request::from_wit(request);
        // The stub runs outside the borrow, so it may itself log.
        let stub = with("downstream.fetch", |r| {
            r.requests.push((service.into(), request.clone()));
            r.stubs.remove(service)
        });
        let Some(stub) = stub else {
            return Err(DownstreamError::UnknownService(format!(
                "no test stub for service `{service}` (TestHost::downstream)"
            ))
            .into());
        };
        let answer = stub(&request);
        with("downstream.fetch", |r| {
            r.stubs.insert(service.into(), stub);
        });
        answer.map(|r| r.into_wit()).map_err(Into::into)
    }
}

/// What the gateway checks around a call, natively (in WebAssembly, nothing: this module is
/// inert there).
#[cfg(not(target_arch = "wasm32"))]
mod checks {
    use serde_json::Value;

    use super::CallResult;
    use crate::{Error, Plugin};

    fn schemas(plugin: &Plugin, name: &str) -> (Option<Value>, Option<Value>) {
        let tool = plugin.describe_tools().into_iter().find(|t| t.name == name);
        let parse = |text: Option<&str>| text.and_then(|t| serde_json::from_str(t).ok());
        match tool {
            Some(t) => (
                parse(Some(&t.input_schema)),
                parse(t.output_schema.as_deref()),
            ),
            None => (None, None),
        }
    }

    /// The tool's approval rule, if it has one, as the gateway checks it when it loads the
    /// plugin: a type of `[A-Za-z0-9_.:/-]{1,128}`, at most 32 distinct bound arguments that
    /// the `inputSchema` names, an age of 1 s to a day.
    pub(super) fn approval(plugin: &Plugin, name: &str) -> Result<(), Error> {
        let Some(rule) = plugin
            .describe_approval_rules()
            .into_iter()
            .find(|r| r.tool == name)
        else {
            return Ok(());
        };
        let type_ok = (1..=128).contains(&rule.detail_type.len())
            && rule
                .detail_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b));
        let input = schemas(plugin, name).0.unwrap_or_default();
        let problem = if !type_ok {
            Some(format!(
                "type `{}` must match [A-Za-z0-9_.:/-]{{1,128}}",
                rule.detail_type
            ))
        } else if rule.bind.len() > 32 {
            Some("an approval binds at most 32 arguments".into())
        } else if let Some((_, twice)) = rule
            .bind
            .iter()
            .enumerate()
            .find(|(i, b)| rule.bind[..*i].contains(b))
        {
            Some(format!("the approval binds `{twice}` twice"))
        } else if let Some(unknown) = rule
            .bind
            .iter()
            .find(|b| input["properties"].get(b.as_str()).is_none())
        {
            Some(format!(
                "the approval binds `{unknown}`, which the tool's inputSchema does not name"
            ))
        } else if !(1..=86_400).contains(&rule.max_age_secs) {
            Some("an approval's max age must be 1 to 86400 seconds".into())
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(p) => Err(Error::Failed(format!(
                "the gateway refuses this plugin: its approval rule for `{name}`: {p}"
            ))),
        }
    }

    /// The arguments against the tool's `inputSchema`, as the gateway checks them first.
    pub(super) fn arguments(plugin: &Plugin, name: &str, arguments: &Value) -> Result<(), Error> {
        let Some(input) = schemas(plugin, name).0 else {
            return Ok(());
        };
        let wrong = crate::validate::problems(&input, arguments);
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArguments(format!(
                "Invalid arguments for tool `{name}`: {}",
                wrong.join("; ")
            )))
        }
    }

    /// A successful result against the tool's `outputSchema`, as the gateway checks it.
    pub(super) fn output(plugin: &Plugin, name: &str, result: &CallResult) -> Result<(), Error> {
        let Some(output) = schemas(plugin, name).1.filter(|_| !result.is_error) else {
            return Ok(());
        };
        let wrong = match &result.structured {
            Some(v) => crate::validate::problems(&output, v),
            None => vec!["no structured content".into()],
        };
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "tool `{name}` returned a result that does not match its outputSchema (the \
                 gateway refuses such a result): {}",
                wrong.join("; ")
            )))
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod checks {
    use serde_json::Value;

    use super::CallResult;
    use crate::{Error, Plugin};

    pub(super) fn approval(_: &Plugin, _: &str) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn arguments(_: &Plugin, _: &str, _: &Value) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn output(_: &Plugin, _: &str, _: &CallResult) -> Result<(), Error> {
        Ok(())
    }
}

/// MCP spoken to a plugin in-process, as the gateway serves it: [`McpTestClient::request`]
/// takes a method and its params and returns the JSON-RPC answer, `{"result": …}` or
/// `{"error": {"code", "message"}}`. A call that needs input answers the 2026-07-28 way
/// (`inputRequests`, `requestState`); send `inputResponses` and the `requestState` back to go
/// on. Tools are listed with their scopes and whether they may become tasks in `_meta`, as
/// the gateway lists them.
///
/// ```
/// use portcullis_sdk::prelude::*;
/// use portcullis_sdk::testing::McpTestClient;
///
/// let plugin = Plugin::new().tool(Tool::new("t.hi", |_: &Context, _: NoArgs| Ok("hi")));
/// let mut client = McpTestClient::new(plugin);
/// let r = client.request("tools/call", serde_json::json!({"name": "t.hi"}));
/// assert_eq!(r["result"]["content"][0]["text"], "hi");
/// ```
pub struct McpTestClient {
    plugin: Plugin,
    /// The host answering the plugin's imports (identity, stubs, and what it recorded).
    pub host: TestHost,
}

impl McpTestClient {
    /// Speak to `plugin` through a default [`TestHost`].
    pub fn new(plugin: Plugin) -> Self {
        Self::with_host(plugin, TestHost::new())
    }

    /// Speak to `plugin` through `host`.
    pub fn with_host(plugin: Plugin, host: TestHost) -> Self {
        Self { plugin, host }
    }

    /// One request: the JSON-RPC answer.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let answer = match method {
            "initialize" => Ok(self.initialize(&params)),
            "ping" => Ok(serde_json::json!({})),
            "tools/list" => Ok(self.tools()),
            "tools/call" => self.call(&params),
            "resources/list" => Ok(self.resources()),
            "resources/templates/list" => Ok(self.templates()),
            "resources/read" => self.read(&params),
            "prompts/list" => Ok(self.prompts()),
            "prompts/get" => self.prompt(&params),
            "completion/complete" => Ok(self.complete_request(&params)),
            other => Err((-32601, format!("method not found: {other}"))),
        };
        match answer {
            Ok(result) => serde_json::json!({ "result": result }),
            Err((code, message)) => {
                serde_json::json!({"error": {"code": code, "message": message}})
            }
        }
    }

    fn initialize(&self, params: &Value) -> Value {
        let version = params["protocolVersion"].as_str().unwrap_or("2026-07-28");
        serde_json::json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": true},
                "resources": {"listChanged": true, "subscribe": true},
                "prompts": {"listChanged": true}, "completions": {}},
            "serverInfo": {"name": "portcullis-test", "version": "0"},
        })
    }

    fn tools(&self) -> Value {
        let tasks = self.plugin.describe_task_tools();
        let tools: Vec<Value> = self
            .plugin
            .describe_tools()
            .into_iter()
            .map(|t| {
                let mut tool = serde_json::json!({
                    "name": t.name,
                    "description": t.description,
                    "inputSchema": serde_json::from_str::<Value>(&t.input_schema).unwrap_or_default(),
                });
                if let Some(title) = t.title {
                    tool["title"] = title.into();
                }
                if let Some(out) = t.output_schema.and_then(|o| serde_json::from_str::<Value>(&o).ok()) {
                    tool["outputSchema"] = out;
                }
                if let Some(a) = t.annotations {
                    let mut hints = serde_json::Map::new();
                    for (key, value) in [
                        ("readOnlyHint", a.read_only_hint),
                        ("destructiveHint", a.destructive_hint),
                        ("idempotentHint", a.idempotent_hint),
                        ("openWorldHint", a.open_world_hint),
                    ] {
                        if let Some(v) = value {
                            hints.insert(key.into(), v.into());
                        }
                    }
                    tool["annotations"] = hints.into();
                }
                let mut meta = serde_json::Map::new();
                if !t.required_scopes.is_empty() {
                    meta.insert("dev.portcullis/requiredScopes".into(), t.required_scopes.into());
                }
                if let Some(task) = tasks.iter().find(|k| k.name == t.name) {
                    let support = match task.support {
                        crate::bindings::exports::portcullis::plugin::tasks::TaskSupport::Optional => "optional",
                        crate::bindings::exports::portcullis::plugin::tasks::TaskSupport::Required => "required",
                    };
                    meta.insert(
                        "io.modelcontextprotocol/tasks".into(),
                        serde_json::json!({ "taskSupport": support }),
                    );
                }
                if !meta.is_empty() {
                    tool["_meta"] = meta.into();
                }
                tool
            })
            .collect();
        serde_json::json!({ "tools": tools })
    }

    /// The client's answers and state from `params`, for the next call.
    fn take_inputs(&mut self, params: &Value) {
        if let Some(responses) = params["inputResponses"].as_object() {
            for (key, value) in responses {
                self.host.answers.push(InputResponse {
                    key: key.clone(),
                    value: value.to_string(),
                });
            }
        }
        if let Some(state) = params["requestState"].as_str() {
            self.host.state = serde_json::from_str::<Value>(state)
                .ok()
                .and_then(|v| v["state"].as_str().map(str::to_string));
        }
    }

    fn call(&mut self, params: &Value) -> Result<Value, (i64, String)> {
        let name = params["name"].as_str().unwrap_or_default().to_string();
        if !self.plugin.tools.iter().any(|t| t.name == name) {
            return Err((-32602, format!("unknown tool: {name}")));
        }
        self.take_inputs(params);
        let arguments = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        Ok(match self.host.call_tool(&self.plugin, &name, arguments) {
            Ok(r) => {
                let mut out = serde_json::json!({
                    "content": r.content.iter().map(content_json).collect::<Vec<_>>(),
                    "isError": r.is_error,
                });
                if let Some(s) = r.structured {
                    out["structuredContent"] = s;
                }
                out
            }
            Err(Error::NeedInput(needed)) => input_round(&needed),
            Err(e) => serde_json::json!({
                "content": [{"type": "text", "text": e.to_string()}],
                "isError": true,
            }),
        })
    }

    fn resources(&self) -> Value {
        let listed: Vec<Value> = self
            .plugin
            .resources
            .iter()
            .map(|r| {
                let d = r.describe();
                serde_json::json!({"uri": d.uri, "name": d.name, "title": d.title,
                    "description": d.description, "mimeType": d.mime_type})
            })
            .collect();
        serde_json::json!({ "resources": listed })
    }

    fn templates(&self) -> Value {
        let listed: Vec<Value> = self
            .plugin
            .templates
            .iter()
            .map(|t| {
                let d = t.describe();
                serde_json::json!({"uriTemplate": d.uri_template, "name": d.name,
                    "title": d.title, "description": d.description, "mimeType": d.mime_type})
            })
            .collect();
        serde_json::json!({ "resourceTemplates": listed })
    }

    fn read(&mut self, params: &Value) -> Result<Value, (i64, String)> {
        let uri = params["uri"].as_str().unwrap_or_default().to_string();
        self.take_inputs(params);
        match self.host.read_resource(&self.plugin, &uri) {
            Ok(contents) => Ok(serde_json::json!({
                "contents": contents.iter().map(contents_json).collect::<Vec<_>>(),
            })),
            Err(Error::NeedInput(needed)) => Ok(input_round(&needed)),
            Err(Error::NotFound) => Err((-32002, format!("resource not found: {uri}"))),
            Err(e) => Err((-32603, e.to_string())),
        }
    }

    fn prompts(&self) -> Value {
        let listed: Vec<Value> = self
            .plugin
            .prompts
            .iter()
            .map(|p| {
                let d = p.describe();
                serde_json::json!({"name": d.name, "title": d.title, "description": d.description,
                    "arguments": d.arguments.iter().map(|a| serde_json::json!({
                        "name": a.name, "description": a.description, "required": a.required,
                    })).collect::<Vec<_>>()})
            })
            .collect();
        serde_json::json!({ "prompts": listed })
    }

    fn prompt(&mut self, params: &Value) -> Result<Value, (i64, String)> {
        let name = params["name"].as_str().unwrap_or_default().to_string();
        if !self.plugin.prompts.iter().any(|p| p.name == name) {
            return Err((-32602, format!("unknown prompt: {name}")));
        }
        self.take_inputs(params);
        let arguments: Vec<(String, String)> = params["arguments"]
            .as_object()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let borrowed: Vec<(&str, &str)> = arguments
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match self
            .host
            .get_prompt_messages(&self.plugin, &name, &borrowed)
        {
            Ok(messages) => Ok(serde_json::json!({
                "messages": messages.iter().map(|(role, content)| serde_json::json!({
                    "role": match role {
                        prompts::Role::User => "user",
                        prompts::Role::Assistant => "assistant",
                    },
                    "content": content_json(content),
                })).collect::<Vec<_>>(),
            })),
            Err(Error::NeedInput(needed)) => Ok(input_round(&needed)),
            Err(Error::InvalidArguments(m)) => Err((-32602, m)),
            Err(e) => Err((-32603, e.to_string())),
        }
    }

    fn complete_request(&mut self, params: &Value) -> Value {
        let argument = params["argument"]["name"].as_str().unwrap_or_default();
        let prefix = params["argument"]["value"].as_str().unwrap_or_default();
        let values = match params["ref"]["type"].as_str() {
            Some("ref/prompt") => {
                let name = params["ref"]["name"].as_str().unwrap_or_default();
                self.host
                    .complete_prompt(&self.plugin, name, argument, prefix)
            }
            _ => {
                let uri = params["ref"]["uri"].as_str().unwrap_or_default();
                self.host
                    .complete_template(&self.plugin, uri, argument, prefix)
            }
        };
        serde_json::json!({"completion": {"values": values, "hasMore": false}})
    }
}

/// A 2026-07-28 input round for what the plugin `needed`.
fn input_round(needed: &InputNeeded) -> Value {
    use crate::bindings::portcullis::plugin::types::InputRequest;
    let wit = needed.clone().into_wit();
    let mut requests = serde_json::Map::new();
    for keyed in &wit.requests {
        let request = match &keyed.request {
            InputRequest::Elicit(e) => serde_json::json!({"method": "elicitation/create",
                "params": {"message": e.message,
                    "requestedSchema": serde_json::from_str::<Value>(&e.requested_schema).unwrap_or_default()}}),
            InputRequest::Sample(p) => serde_json::json!({"method": "sampling/createMessage",
                "params": serde_json::from_str::<Value>(p).unwrap_or_default()}),
            InputRequest::ListRoots => serde_json::json!({"method": "roots/list", "params": {}}),
        };
        requests.insert(keyed.key.clone(), request);
    }
    serde_json::json!({
        "inputRequests": requests,
        "requestState": serde_json::json!({"state": wit.state}).to_string(),
    })
}

/// One content block as MCP JSON.
fn content_json(content: &Content) -> Value {
    use base64_lite as b64;
    match content {
        Content::Text(t) => serde_json::json!({"type": "text", "text": t}),
        Content::Image(b) => {
            serde_json::json!({"type": "image", "data": b64::encode(&b.data), "mimeType": b.mime_type})
        }
        Content::Audio(b) => {
            serde_json::json!({"type": "audio", "data": b64::encode(&b.data), "mimeType": b.mime_type})
        }
        Content::ResourceLink(l) => serde_json::json!({"type": "resource_link", "uri": l.uri,
            "name": l.name, "title": l.title, "description": l.description, "mimeType": l.mime_type}),
        Content::Resource(r) => {
            serde_json::json!({"type": "resource", "resource": contents_json(&ReadContents::from(r.clone()))})
        }
    }
}

fn contents_json(c: &ReadContents) -> Value {
    let mut out = serde_json::json!({"uri": c.uri, "mimeType": c.mime_type});
    if let Some(t) = &c.text {
        out["text"] = t.clone().into();
    }
    if let Some(b) = &c.blob {
        out["blob"] = base64_lite::encode(b).into();
    }
    out
}

/// Standard base64, for binary content in the JSON answers (no dependency for it).
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn encodes_as_rfc_4648_says() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), encoded);
        }
    }
}
