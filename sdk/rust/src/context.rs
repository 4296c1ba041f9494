//! Who is calling and with what: the call context the gateway passes (never a token), the
//! operator's configuration values, and asking the client for input (elicitation, sampling,
//! roots) across the gateway's input-required round trips.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::bindings::portcullis::plugin::{host, types};
use crate::error::{Error, InputNeeded, Result};
use crate::tool::schema_text;

pub use types::ClientFeatures;

/// One call's context.
pub struct Context {
    call: types::CallContext,
    continuation: Option<types::Continuation>,
    keep_state: RefCell<Option<String>>,
}

impl Context {
    pub(crate) fn new(call: types::CallContext, continuation: Option<types::Continuation>) -> Self {
        Self {
            call,
            continuation,
            keep_state: RefCell::new(None),
        }
    }

    /// The tenant this request was routed to.
    pub fn tenant(&self) -> &str {
        &self.call.tenant
    }

    /// The authorization server that vouched for the caller; `None` for a configured identity
    /// (authentication off, stdio). Key per-user state by (tenant, issuer, subject).
    pub fn issuer(&self) -> Option<&str> {
        self.call.issuer.as_deref()
    }

    /// The authenticated subject (`sub`).
    pub fn subject(&self) -> Option<&str> {
        self.call.subject.as_deref()
    }

    /// The OAuth client the caller used, if known.
    pub fn client_id(&self) -> Option<&str> {
        self.call.client_id.as_deref()
    }

    /// The caller's scopes.
    pub fn scopes(&self) -> &[String] {
        &self.call.scopes
    }

    /// Whether the caller holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.call.scopes.iter().any(|s| s == scope)
    }

    /// A claim the operator chose to pass (`[tenant] forward_claims`), as JSON.
    pub fn claim(&self, name: &str) -> Option<Value> {
        self.call
            .claims
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| serde_json::from_str(v).ok())
    }

    /// An operator configuration value for this plugin (`[tenant.plugin.NAME] config`).
    pub fn config(&self, key: &str) -> Option<&str> {
        self.call
            .config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A configuration value the plugin cannot work without: a clear failure if missing.
    pub fn require_config(&self, key: &str) -> Result<&str> {
        self.config(key).ok_or_else(|| {
            Error::failed(format!(
                "this plugin needs the configuration value `{key}`; ask the gateway's operator to set it"
            ))
        })
    }

    /// The JSON-RPC request id, as text.
    pub fn request_id(&self) -> &str {
        &self.call.request_id
    }

    /// The W3C `traceparent` this call runs in.
    pub fn trace_parent(&self) -> Option<&str> {
        self.call.trace_parent.as_deref()
    }

    /// What the client can answer if the plugin asks for input.
    pub fn client(&self) -> ClientFeatures {
        self.call.client
    }

    /// Report progress (sent only if the client asked for it; values must increase).
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        crate::sys::progress(progress, total, message);
    }

    /// Log to the client (if it asked for this level) and the gateway's log.
    pub fn log(&self, level: host::LogLevel, message: &str) {
        crate::sys::log(level, None, message);
    }

    /// The plugin's own state from the previous input round, as verified by the gateway.
    pub fn state(&self) -> Option<&str> {
        self.continuation.as_ref().and_then(|c| c.state.as_deref())
    }

    /// State to get back (via [`Context::state`]) when the gateway calls again with the
    /// client's answers. The gateway integrity-protects it; it is not secret from the client.
    pub fn keep_state(&self, state: impl Into<String>) {
        *self.keep_state.borrow_mut() = Some(state.into());
    }

    /// The client's answer to the request `key`, as JSON, if this round has it.
    pub fn answer(&self, key: &str) -> Option<Value> {
        self.continuation
            .as_ref()?
            .responses
            .iter()
            .find(|r| r.key == key)
            .and_then(|r| serde_json::from_str(&r.value).ok())
    }

    /// Ask the user to fill in a form whose fields are `T`'s (flat, primitive properties):
    /// `Ok(Some(answer))` once accepted, `Ok(None)` if the user declined or cancelled. The
    /// first time, this returns [`Error::NeedInput`]: return it (`?`) and the gateway asks,
    /// then calls the tool again with the answer.
    pub fn elicit<T: DeserializeOwned + schemars::JsonSchema>(
        &self,
        key: &str,
        message: &str,
    ) -> Result<Option<T>> {
        let Some(answer) = self.answer(key) else {
            return Err(self.need(
                key,
                types::InputRequest::Elicit(types::Elicitation {
                    message: message.into(),
                    requested_schema: schema_text::<T>(),
                }),
            ));
        };
        if answer["action"] != "accept" {
            return Ok(None);
        }
        serde_json::from_value(answer["content"].clone())
            .map(Some)
            .map_err(|e| Error::failed(format!("the form's answer does not fit: {e}")))
    }

    /// Ask the client's model (`sampling/createMessage` with these params); the answer is
    /// its `CreateMessageResult` as JSON. Same round trip as [`Context::elicit`].
    pub fn sample(&self, key: &str, params: &Value) -> Result<Value> {
        self.answer(key)
            .ok_or_else(|| self.need(key, types::InputRequest::Sample(params.to_string())))
    }

    /// Ask for the client's roots (`roots/list`): the `uri` of each. Same round trip as
    /// [`Context::elicit`].
    pub fn roots(&self, key: &str) -> Result<Vec<String>> {
        let answer = self
            .answer(key)
            .ok_or_else(|| self.need(key, types::InputRequest::ListRoots))?;
        Ok(answer["roots"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["uri"].as_str().map(str::to_string))
            .collect())
    }

    fn need(&self, key: &str, request: types::InputRequest) -> Error {
        Error::NeedInput(InputNeeded {
            requests: vec![types::KeyedRequest {
                key: key.into(),
                request,
            }],
            state: self.keep_state.borrow().clone(),
        })
    }
}
