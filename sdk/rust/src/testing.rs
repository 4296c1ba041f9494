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

    /// Read the resource at `uri`: its text (or blob) contents.
    pub fn read_resource(
        &mut self,
        plugin: &Plugin,
        uri: &str,
    ) -> Result<Vec<crate::bindings::portcullis::plugin::types::ResourceContents>, Error> {
        let ctx = self.context.clone();
        let continuation = self.continuation();
        match self.with_host(|| crate::guest::read_resource(plugin, ctx, uri, continuation)) {
            Ok(resources::ReadOutcome::Done(c)) => Ok(c),
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
                .map(|m| match m.content {
                    Content::Text(t) => t,
                    _ => String::new(),
                })
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

    pub(crate) fn notify_lists_changed(_kinds: host::ListKinds) {
        with("notify-lists-changed", |_| ());
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

    pub(super) fn arguments(_: &Plugin, _: &str, _: &Value) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn output(_: &Plugin, _: &str, _: &CallResult) -> Result<(), Error> {
        Ok(())
    }
}
