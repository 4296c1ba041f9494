//! "Input required": a plugin asks the client something before it can answer.
//!
//! Owns: the round machine for both eras ([`Gateway::run`]): on a 2025 session each request
//! goes to the client as a server→client request and the plugin runs again with the answers
//! (at most [`MAX_INPUT_ROUNDS`] times); on 2026-07-28 the request is answered with an
//! `InputRequiredResult` whose `requestState` is sealed to the caller and the questions
//! asked, and the client's retry resumes the plugin. Must not: seal or open state itself
//! (`request_state` does) or decide whether the call may happen.

use std::future::Future;
use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::model::{CustomRequest, InputRequiredResult, InputResponses, ServerRequest};
use serde_json::{Value, json};
use tracing::Instrument as _;

use super::call::Invocation;
use super::convert::{self, complete, model};
use super::era::Era;
use super::exchange::{Exchange, ToClient};
use super::gateway::Gateway;
use super::record::{Outcome, RequestRecord};
use super::request_state::Binding;
use crate::plugins::{LoadedPlugin, Target};
use crate::sandbox::{BoxFuture, wit};
use crate::telemetry::untrusted;

/// Most "input required" rounds one request may take on a 2025 session.
pub(super) const MAX_INPUT_ROUNDS: usize = 10;

/// The outcome of one plugin invocation.
pub(super) enum Step<T> {
    Done(T),
    Input(wit::InputRequired),
}

/// The outcome of a request that may need input.
pub(super) enum Rounds<T> {
    Done(T),
    InputRequired(InputRequiredResult),
}

/// Why a request that may need input did not complete.
pub(super) enum RoundError {
    /// A protocol error for the client.
    Rpc(ErrorData),
    /// The plugin needs client capabilities the client did not declare (a `ClientCapabilities` object).
    MissingCapability(Value),
    /// Input could not be obtained from the client.
    Input(String),
}

impl From<ErrorData> for RoundError {
    fn from(e: ErrorData) -> Self {
        Self::Rpc(e)
    }
}

/// What a 2026-07-28 retry carries: the client's answers and the state that asked.
#[derive(Clone, Copy, Default)]
pub(super) struct Retry<'a> {
    pub(super) responses: Option<&'a InputResponses>,
    pub(super) state: Option<&'a str>,
}

/// One input request, ready for the wire.
pub(super) struct Question {
    pub(super) key: String,
    pub(super) method: &'static str,
    pub(super) params: Value,
}

impl Gateway {
    /// A request answered by one plugin export that may ask for input and whose answer is a
    /// result or a protocol error (prompts, resource reads): authorize `target`, run the
    /// rounds, answer for the era, and record the request.
    pub(super) async fn answer_with_input<R, C, F, Fut>(
        &self,
        ex: &Exchange,
        method: &'static str,
        target: Target<'_>,
        retry: Retry<'_>,
        call: F,
    ) -> Result<R, ErrorData>
    where
        R: From<C> + From<InputRequiredResult>,
        C: serde::de::DeserializeOwned,
        F: Fn(Invocation, Option<wit::Continuation>) -> Fut,
        Fut: Future<Output = Result<Step<Value>, RoundError>> + Send + 'static,
    {
        let record = RequestRecord::start(&self.tenant, ex, method, Some(target.key()));
        let catalog = self.tenant.catalog();
        let plugin = match self.authorize(&catalog, &ex.who, target) {
            Ok(permit) => permit.plugin,
            Err(refused) => {
                record.refused(None, &refused);
                return Err(refused.into_error());
            }
        };
        let rounds = self
            .run(ex, plugin, &record, retry, call)
            .instrument(record.span.clone())
            .await;
        let response = respond::<R, C>(ex.era, rounds);
        record.finish(Some(&plugin.name), Outcome::of(&response));
        response
    }

    /// Run one plugin export that may ask for input (tool call, prompt, resource read): set up
    /// the call's environment once, then invoke `call` for each round the request's era allows.
    pub(super) async fn run<F, Fut>(
        &self,
        ex: &Exchange,
        plugin: &Arc<LoadedPlugin>,
        record: &RequestRecord,
        retry: Retry<'_>,
        call: F,
    ) -> Result<Rounds<Value>, RoundError>
    where
        F: Fn(Invocation, Option<wit::Continuation>) -> Fut,
        Fut: Future<Output = Result<Step<Value>, RoundError>> + Send + 'static,
    {
        let invocation = self.invocation(ex, plugin, record);
        let binding = binding(ex, record);
        self.drive(ex, &binding, retry, |continuation| {
            Box::pin(call(invocation.clone(), continuation))
        })
        .await
    }

    /// Invoke a plugin until it is done, serving its input requests the way the era allows.
    async fn drive<T, F>(
        &self,
        ex: &Exchange,
        binding: &Binding,
        retry: Retry<'_>,
        mut invoke: F,
    ) -> Result<Rounds<T>, RoundError>
    where
        F: FnMut(Option<wit::Continuation>) -> BoxFuture<'static, Result<Step<T>, RoundError>>,
    {
        let era = ex.era;
        let mut continuation = match era {
            Era::Stateless => self.retry_continuation(binding, retry)?,
            Era::Session => None,
        };
        for _ in 0..MAX_INPUT_ROUNDS {
            let needed = match invoke(continuation.take()).await? {
                Step::Done(v) => return Ok(Rounds::Done(v)),
                Step::Input(ir) => ir,
            };
            let questions = questions(&ex.client_caps, &needed)?;
            if era == Era::Stateless {
                return Ok(Rounds::InputRequired(self.input_required(
                    binding,
                    questions,
                    needed.state.as_deref(),
                )?));
            }
            continuation = Some(wit::Continuation {
                responses: ask_client(&ex.to_client, questions).await?,
                state: needed.state,
            });
        }
        Err(RoundError::Input(format!(
            "the plugin asked for input more than {MAX_INPUT_ROUNDS} times"
        )))
    }

    /// The 2026-07-28 answer asking `questions`, with the plugin's `state` sealed.
    pub(super) fn input_required(
        &self,
        binding: &Binding,
        questions: Vec<Question>,
        state: Option<&str>,
    ) -> Result<InputRequiredResult, RoundError> {
        let keys: Vec<String> = questions.iter().map(|q| q.key.clone()).collect();
        let input_requests: serde_json::Map<String, Value> = questions
            .into_iter()
            .map(|q| (q.key, json!({"method": q.method, "params": q.params})))
            .collect();
        let sealed = self.tenant.sealer.seal(binding, &keys, state);
        Ok(model::<InputRequiredResult>(json!({
            "resultType": "input_required",
            "inputRequests": input_requests,
            "requestState": sealed,
        }))?)
    }

    /// The continuation carried by a 2026-07-28 retry (`inputResponses` + `requestState`).
    pub(super) fn retry_continuation(
        &self,
        binding: &Binding,
        retry: Retry<'_>,
    ) -> Result<Option<wit::Continuation>, ErrorData> {
        let Retry { responses, state } = retry;
        if responses.is_none() && state.is_none() {
            return Ok(None);
        }
        let refuse = |e: &dyn std::fmt::Display| {
            tracing::warn!(tenant = %binding.tenant, method = %binding.method,
                target = %untrusted(&binding.target), "refused requestState: {e}");
            ErrorData::invalid_params(e.to_string(), None)
        };
        // Answers sent up front, without a state: the client's own data (SEP-2322), as good
        // as answers to the questions it would have been asked; the plugin gets them with no
        // state of its own. With a state, only answers to the questions that state asked
        // reach the plugin; others are ignored (SEP-2322: unrecognized keys).
        let (plugin_state, asked) = match state {
            None => (None, None),
            Some(state) => {
                let opened = self
                    .tenant
                    .sealer
                    .open(state, binding)
                    .map_err(|e| refuse(&e))?;
                (opened.state, Some(opened.keys))
            }
        };
        let mut out = Vec::new();
        for (key, value) in responses.into_iter().flatten() {
            if key == super::refusal::CONSENT_KEY {
                // The host's own question (a consent): the call simply runs again.
                continue;
            }
            if asked.as_ref().is_some_and(|keys| !keys.contains(key)) {
                tracing::debug!(tenant = %binding.tenant, key = %untrusted(key),
                    "ignoring an answer to a question this requestState did not ask");
                continue;
            }
            if !value.is_object() {
                return Err(ErrorData::invalid_params(
                    format!(
                        "inputResponses.{key} must be an object (the client's result for that request)"
                    ),
                    None,
                ));
            }
            out.push(wit::InputResponse {
                key: key.clone(),
                value: value.to_string(),
            });
        }
        if out.is_empty()
            && plugin_state.is_none()
            && asked
                .as_ref()
                .is_some_and(|keys| keys.iter().all(|k| k == super::refusal::CONSENT_KEY))
        {
            // Only the host asked: the plugin runs afresh.
            return Ok(None);
        }
        Ok(Some(wit::Continuation {
            responses: out,
            state: plugin_state,
        }))
    }
}

/// What a 2026-07-28 `requestState` for the request `ex` is sealed to.
pub(super) fn binding(ex: &Exchange, record: &RequestRecord) -> Binding {
    let who = &ex.who;
    Binding {
        tenant: who.tenant.to_string(),
        issuer: who.issuer.as_deref().map(str::to_string),
        subject: who.subject.clone(),
        method: record.method.into(),
        target: record.target.clone(),
    }
}

/// The plugin's input requests as protocol requests, refused when they need capabilities the
/// client did not declare or are malformed.
pub(super) fn questions(
    caps: &Value,
    needed: &wit::InputRequired,
) -> Result<Vec<Question>, RoundError> {
    if needed.requests.is_empty() && needed.state.is_none() {
        return Err(RoundError::Rpc(ErrorData::internal_error(
            "the plugin asked for input but named none",
            None,
        )));
    }
    let missing: serde_json::Map<String, Value> = needed
        .requests
        .iter()
        .map(|r| convert::required_capability(&r.request))
        .filter(|cap| caps.get(*cap).is_none())
        .map(|cap| (cap.to_string(), json!({})))
        .collect();
    if !missing.is_empty() {
        return Err(RoundError::MissingCapability(Value::Object(missing)));
    }
    needed
        .requests
        .iter()
        .map(|r| {
            let (method, params) = convert::input_request(&r.request).map_err(|e| {
                RoundError::Rpc(ErrorData::internal_error(
                    format!("the plugin's input request is invalid: {e}"),
                    None,
                ))
            })?;
            Ok(Question {
                key: r.key.clone(),
                method,
                params,
            })
        })
        .collect()
}

/// Ask the client of a 2025 session each question, in order.
pub(super) async fn ask_client(
    to_client: &ToClient,
    questions: Vec<Question>,
) -> Result<Vec<wit::InputResponse>, RoundError> {
    let ToClient::Peer(peer) = to_client else {
        return Err(RoundError::Input(
            "this request has no channel for server-to-client requests".into(),
        ));
    };
    let mut answers = Vec::with_capacity(questions.len());
    for Question {
        key,
        method,
        params,
    } in questions
    {
        let request = ServerRequest::CustomRequest(CustomRequest::new(method, Some(params)));
        let answer = peer
            .send_request(request)
            .await
            .map_err(|e| RoundError::Input(format!("the client did not answer {method}: {e}")))?;
        let value = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
        answers.push(wit::InputResponse { key, value });
    }
    Ok(answers)
}

/// The protocol answer for a prompt or resource read that may have needed input.
fn respond<R, C>(era: Era, rounds: Result<Rounds<Value>, RoundError>) -> Result<R, ErrorData>
where
    R: From<C> + From<InputRequiredResult>,
    C: serde::de::DeserializeOwned,
{
    match rounds {
        Ok(Rounds::Done(v)) => Ok(R::from(complete::<C>(v)?)),
        Ok(Rounds::InputRequired(r)) => Ok(R::from(r)),
        Err(e) => Err(round_error(era, e)),
    }
}

/// A request-level failure of a prompt or resource read (or of a task's round), as a
/// protocol error for its era.
pub(super) fn round_error(era: Era, e: RoundError) -> ErrorData {
    match (e, era) {
        (RoundError::Rpc(e), _) => e,
        (RoundError::MissingCapability(caps), Era::Stateless) => match model(caps) {
            Ok(caps) => ErrorData::missing_required_client_capability(caps),
            Err(e) => e,
        },
        (RoundError::MissingCapability(caps), Era::Session) => ErrorData::invalid_request(
            format!("this request needs client capabilities the client did not declare: {caps}"),
            None,
        ),
        (RoundError::Input(msg), _) => ErrorData::internal_error(msg, None),
    }
}
