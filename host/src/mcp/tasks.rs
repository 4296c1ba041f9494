//! MCP Tasks on the wire (`io.modelcontextprotocol/tasks`, SEP-2663), in both eras: a
//! `tools/call` of a task tool from a client that declared the extension (per request on
//! 2026-07-28, at `initialize` in a 2025 session) is answered with a `CreateTaskResult`; the
//! plugin runs on in the background; `tasks/get`, `tasks/update` and `tasks/cancel` reach it.
//!
//! Owns: when a call becomes a task (the tool's declared [`TaskMode`]: `in-task` tools at
//! once; `before-task` tools once a round outlasts the inline window, their earlier
//! questions answered like an ordinary call's), the task's run (its rounds, its questions
//! asked through the task, its deadline, its progress as the status message, its end when
//! cancelled: the token stops the instance), and the task values on the wire. Must not: keep
//! task state (`crate::tasks::TaskTable` does, bound to the caller) or decide who may call the
//! tool (`Gateway::authorize`, at creation and again at every look-up).

use std::sync::{Arc, OnceLock};

use rmcp::model::{
    CallToolResponse, CancelTaskParams, CreateTaskResult, GetTaskParams, GetTaskResult,
    NumberOrString, ProgressToken, ServerNotification, UpdateTaskParams,
};
use rmcp::service::Peer;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::call::Invocation;
use super::convert::model;
use super::era::Era;
use super::exchange::{Exchange, ToClient};
use super::gateway::Gateway;
use super::input::{self, MAX_INPUT_ROUNDS, Retry, RoundError, Step};
use super::record::{RequestRecord, TaskRecord};
use super::tools::{answer, invoke};
use crate::plugins::{LoadedPlugin, Target, TaskMode};
use crate::sandbox::wit;
use crate::tasks::{Lookup, Owner, Snapshot, Status, TaskHandle};
use crate::tenancy::quota::Held;

/// The extension's identifier, in capabilities.
pub(super) const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Whether a client with capabilities `caps` declared the tasks extension.
pub(super) fn negotiated(caps: &Value) -> bool {
    caps.get("extensions")
        .and_then(|e| e.get(EXTENSION))
        .is_some()
}

/// `-32021`: this tool runs only as a task, and the client did not declare the extension.
pub(super) fn required() -> ErrorData {
    match model(json!({"extensions": {EXTENSION: {}}})) {
        Ok(caps) => ErrorData::missing_required_client_capability(caps),
        Err(e) => e,
    }
}

/// Where a task's plugin reports go: to the request's own stream until the call becomes a
/// task, then into the task (progress becomes its status message; logs stay in the gateway's
/// log, since no request is left to carry them).
pub(super) struct TaskSink {
    before: ToClient,
    task: OnceLock<Arc<TaskHandle>>,
}

impl TaskSink {
    /// Deliver the notification `method` with `params`; `true` if the task took it.
    pub(super) fn take(&self, method: &str, params: &Value) -> bool {
        let Some(task) = self.task.get() else {
            return false;
        };
        if method == "notifications/progress" {
            let message = params["message"].as_str().map_or_else(
                || match params["total"].as_f64() {
                    Some(total) => format!("{} of {total}", params["progress"]),
                    None => format!("progress {}", params["progress"]),
                },
                str::to_string,
            );
            task.progress(message);
        }
        true
    }

    /// Where notifications go until the call is a task.
    pub(super) fn before(&self) -> &ToClient {
        &self.before
    }
}

/// A `tools/call` of task tool `name` (mode `mode`) from a client that declared the
/// extension. `record` is the request's; the task outlives it.
#[allow(
    clippy::too_many_arguments,
    reason = "one call's parts, split by who owns them"
)]
pub(super) async fn call(
    gw: &Gateway,
    ex: &Exchange,
    plugin: &Arc<LoadedPlugin>,
    name: &str,
    arguments: String,
    mode: TaskMode,
    retry: Retry<'_>,
    record: &RequestRecord,
) -> Result<CallToolResponse, ErrorData> {
    let settings = gw.tenant.tasks.settings().clone();
    // The call's own token: the task's, so the request ending does not stop it.
    let token = CancellationToken::new();
    let sink = Arc::new(TaskSink {
        before: ex.to_client.clone(),
        task: OnceLock::new(),
    });
    let tex = task_exchange(ex, token.clone(), sink.clone());
    let mut invocation = gw.invocation(&tex, plugin, record);
    invocation.env.limits.deadline = settings.deadline;
    let run = Run {
        caps: ex.client_caps.clone(),
        invocation,
        name: name.to_string(),
        arguments,
        _held: tex.held.clone(),
        record: record.for_task().of_plugin(&plugin.name),
    };
    if !mode.input_first {
        let task = create(gw, ex, name, &token, &sink, record).await?;
        let created = envelope(&task)?;
        tokio::spawn(run.drive(task, None));
        return Ok(CallToolResponse::Task(created));
    }
    // `before-task`: rounds run here until one asks nothing within the inline window.
    let binding = input::binding(ex, record);
    let mut continuation = match ex.era {
        Era::Stateless => gw.retry_continuation(&binding, retry)?,
        Era::Session => None,
    };
    for _ in 0..MAX_INPUT_ROUNDS {
        let mut job = Abort(Some(run.round(continuation.take())));
        let finished = tokio::select! {
            out = job.wait() => out,
            () = tokio::time::sleep(settings.inline) => {
                let task = create(gw, ex, name, &token, &sink, record).await?;
                let created = envelope(&task)?;
                tokio::spawn(run.drive(task, job.0.take()));
                return Ok(CallToolResponse::Task(created));
            }
            () = ex.cancel.cancelled() => {
                token.cancel();
                return Err(ErrorData::internal_error("request cancelled", None));
            }
        };
        match finished {
            Ok(Step::Done(result)) if mode.required => {
                let task = create(gw, ex, name, &token, &sink, record).await?;
                let created = envelope(&task)?;
                task.complete(result);
                // Recorded once this request's own event is.
                let record = run.record;
                tokio::spawn(async move { record.ended(&task).await });
                return Ok(CallToolResponse::Task(created));
            }
            Ok(Step::Done(result)) => {
                return answer(name, Ok(input::Rounds::Done(result)), ex.era);
            }
            Ok(Step::Input(needed)) => {
                let questions = match input::questions(&ex.client_caps, &needed) {
                    Ok(q) => q,
                    Err(e) => return answer(name, Err(e), ex.era),
                };
                if ex.era == Era::Stateless {
                    let asked = gw.input_required(&binding, questions, needed.state.as_deref());
                    return match asked {
                        Ok(r) => Ok(CallToolResponse::InputRequired(r)),
                        Err(e) => answer(name, Err(e), ex.era),
                    };
                }
                match input::ask_client(&ex.to_client, questions).await {
                    Ok(responses) => {
                        continuation = Some(wit::Continuation {
                            responses,
                            state: needed.state,
                        });
                    }
                    Err(e) => return answer(name, Err(e), ex.era),
                }
            }
            Err(e) => return answer(name, Err(e), ex.era),
        }
    }
    answer(
        name,
        Err(RoundError::Input(format!(
            "the plugin asked for input more than {MAX_INPUT_ROUNDS} times"
        ))),
        ex.era,
    )
}

/// The task for this call of `name`, its reports now going into it.
async fn create(
    gw: &Gateway,
    ex: &Exchange,
    name: &str,
    token: &CancellationToken,
    sink: &TaskSink,
    record: &RequestRecord,
) -> Result<Arc<TaskHandle>, ErrorData> {
    let task = gw
        .tenant
        .tasks
        .create_counted(Owner::of(&ex.who), name, token.clone())
        .await
        .map_err(|e| {
            tracing::warn!(tenant = %gw.tenant.id(), caller = %ex.who.caller(), tool = name,
                "task refused: {e}");
            ErrorData::invalid_request(format!("cannot start a task for `{name}`: {e}"), None)
        })?;
    let task = Arc::new(task);
    record.note_task(task.id());
    let _ = sink.task.set(task.clone());
    if let Some(peer) = &ex.session_peer {
        announce(&task, peer.clone());
    }
    Ok(task)
}

/// Send `notifications/tasks` to the session that created `task` whenever its status changes,
/// until it is over, gone, or the session is.
fn announce(task: &TaskHandle, peer: Peer<RoleServer>) {
    let Some(mut changes) = task.watch() else {
        return;
    };
    tokio::spawn(async move {
        let mut last = changes.borrow().status;
        while changes.changed().await.is_ok() {
            let snapshot = changes.borrow_and_update().clone();
            if snapshot.status == last {
                continue;
            }
            last = snapshot.status;
            let message = json!({"method": "notifications/tasks", "params": detailed(snapshot)});
            let Ok(notification) = serde_json::from_value::<ServerNotification>(message) else {
                break;
            };
            if peer.send_notification(notification).await.is_err() || last.is_terminal() {
                break;
            }
        }
    });
}

/// The exchange a task's plugin calls run with: the request's caller, token and client, the
/// task's cancellation, and reports into the task.
fn task_exchange(ex: &Exchange, cancel: CancellationToken, sink: Arc<TaskSink>) -> Exchange {
    let mut meta = ex.meta.clone();
    // Progress is the task's status message whether or not the client asked for progress.
    if meta.get_progress_token().is_none() {
        meta.set_progress_token(ProgressToken(NumberOrString::String("task".into())));
    }
    Exchange {
        who: ex.who.clone(),
        secret: ex.secret.clone(),
        id: ex.id.clone(),
        meta,
        era: ex.era,
        client_caps: ex.client_caps.clone(),
        cancel,
        span: ex.span.clone(),
        to_client: ToClient::Task(sink),
        session_peer: ex.session_peer.clone(),
        held: ex.held.clone(),
        needs: ex.needs.clone(),
    }
}

/// What one task runs: the same tool call, round after round.
struct Run {
    caps: Value,
    invocation: Invocation,
    name: String,
    arguments: String,
    /// The request's place among those in progress: a running task keeps it.
    _held: Option<Held>,
    /// The audit record of the task's end.
    record: TaskRecord,
}

/// A round running on its own task, aborted if dropped before it finishes.
struct Abort(Option<JoinHandle<Outcome>>);

impl Abort {
    async fn wait(&mut self) -> Outcome {
        match self.0.as_mut() {
            Some(job) => {
                let out = job.await;
                self.0 = None;
                out.unwrap_or_else(|e| {
                    Err(RoundError::Rpc(ErrorData::internal_error(
                        format!("the call's task failed: {e}"),
                        None,
                    )))
                })
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for Abort {
    fn drop(&mut self) {
        if let Some(job) = self.0.take() {
            job.abort();
        }
    }
}

impl Run {
    /// One round, spawned (so it can outlive the request that started it).
    fn round(&self, continuation: Option<wit::Continuation>) -> JoinHandle<Outcome> {
        tokio::spawn(invoke(
            self.invocation.clone(),
            self.name.clone(),
            self.arguments.clone(),
            continuation,
        ))
    }

    /// Run the task to its end (`pending` is a round already running), and record how it
    /// ended.
    async fn drive(self, task: Arc<TaskHandle>, pending: Option<JoinHandle<Outcome>>) {
        self.rounds(&task, pending).await;
        self.record.ended(&task).await;
    }

    /// The task's rounds, until it is done, failed, cancelled or gone.
    async fn rounds(&self, task: &TaskHandle, pending: Option<JoinHandle<Outcome>>) {
        let cancelled = task.cancelled();
        let mut job = Abort(pending);
        let mut continuation = None;
        for _ in 0..MAX_INPUT_ROUNDS {
            if job.0.is_none() {
                job = Abort(Some(self.round(continuation.take())));
            }
            let finished = tokio::select! {
                out = job.wait() => out,
                // Dropping the round aborts it; the token has already stopped its instance.
                () = cancelled.cancelled() => return,
            };
            let needed = match finished {
                Ok(Step::Done(result)) => return task.complete(result),
                Err(e) => return task.fail(error_object(e)),
                Ok(Step::Input(needed)) => needed,
            };
            let questions = match input::questions(&self.caps, &needed) {
                Ok(q) => q,
                Err(e) => return task.fail(error_object(e)),
            };
            let asked: Map<String, Value> = questions
                .into_iter()
                .map(|q| (q.key, json!({"method": q.method, "params": q.params})))
                .collect();
            let Some(answers) = task.ask(asked).await else {
                return;
            };
            continuation = Some(wit::Continuation {
                responses: answers
                    .into_iter()
                    .map(|(key, value)| wit::InputResponse {
                        key,
                        value: value.to_string(),
                    })
                    .collect(),
                state: needed.state,
            });
        }
        task.fail(error_object(RoundError::Input(format!(
            "the plugin asked for input more than {MAX_INPUT_ROUNDS} times"
        ))));
    }
}

/// A round's outcome: done, asking, or failed.
type Outcome = Result<Step<Value>, RoundError>;

/// A failed round as the JSON-RPC error object a failed task carries.
fn error_object(e: RoundError) -> Value {
    let error = input::round_error(Era::Stateless, e);
    serde_json::to_value(&error).unwrap_or_else(|_| json!({"code": -32603, "message": "failed"}))
}

/// The `CreateTaskResult` for `task` as it is now.
fn envelope(task: &TaskHandle) -> Result<CreateTaskResult, ErrorData> {
    let snapshot = task
        .snapshot()
        .ok_or_else(|| ErrorData::internal_error("the task vanished", None))?;
    let mut value = base(&snapshot);
    value["resultType"] = "task".into();
    model(value)
}

/// A task's base fields on the wire.
fn base(s: &Snapshot) -> Value {
    let mut v = json!({
        "taskId": s.id,
        "status": s.status.as_str(),
        "createdAt": crate::tasks::rfc3339(s.created_at),
        "lastUpdatedAt": crate::tasks::rfc3339(s.updated_at),
        "ttlMs": u64::try_from(s.ttl.as_millis()).unwrap_or(u64::MAX),
        "pollIntervalMs": u64::try_from(s.poll_interval.as_millis()).unwrap_or(u64::MAX),
    });
    if let Some(m) = &s.status_message {
        v["statusMessage"] = m.clone().into();
    }
    v
}

/// `-32602` for a task this caller cannot use (unknown, expired, someone else's, or its tool
/// no longer visible to the caller): one answer for all, so ids reveal nothing.
fn not_found(id: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("Invalid task `{id}`: unknown, expired, or not this caller's"),
        None,
    )
}

/// A task look-up's failure, on the wire.
fn refused(id: &str, e: Lookup) -> ErrorData {
    match e {
        Lookup::NotFound(_) => not_found(id),
        Lookup::Down(e) => {
            tracing::warn!("{e}");
            ErrorData::internal_error(e.to_string(), None)
        }
    }
}

/// The caller's task `id` (held here or, with replicas, anywhere), if it may still call the
/// task's tool.
async fn lookup(gw: &Gateway, ex: &Exchange, id: &str) -> Result<Snapshot, ErrorData> {
    let snapshot = gw
        .tenant
        .tasks
        .find(&Owner::of(&ex.who), id)
        .await
        .map_err(|e| refused(id, e))?;
    let catalog = gw.tenant.catalog();
    // Its call was decided with its arguments when the task was created; the caller must
    // still be allowed the tool.
    gw.decide(
        &catalog,
        &crate::authz::Request::of(&ex.who, Target::Tool(&snapshot.tool)),
    )
    .map_err(|_| not_found(id))?;
    Ok(snapshot)
}

/// `tasks/get`.
pub(super) async fn get(
    gw: &Gateway,
    request: &GetTaskParams,
    ex: &Exchange,
) -> Result<GetTaskResult, ErrorData> {
    let mut v = detailed(lookup(gw, ex, &request.task_id).await?);
    v["resultType"] = "complete".into();
    model(v)
}

/// A task with its status's payload (`inputRequests`, `result` or `error`): `DetailedTask`.
fn detailed(s: Snapshot) -> Value {
    let mut v = base(&s);
    match s.status {
        Status::InputRequired => v["inputRequests"] = Value::Object(s.input_requests),
        Status::Completed => {
            v["result"] = s.result.unwrap_or_else(|| json!({"content": []}));
        }
        Status::Failed => {
            v["error"] = s
                .error
                .unwrap_or_else(|| json!({"code": -32603, "message": "failed"}));
        }
        Status::Working | Status::Cancelled => {}
    }
    v
}

/// `tasks/update`: answers to the task's outstanding questions.
pub(super) async fn update(
    gw: &Gateway,
    request: UpdateTaskParams,
    ex: &Exchange,
) -> Result<(), ErrorData> {
    lookup(gw, ex, &request.task_id).await?;
    for (key, value) in &request.input_responses {
        if !value.is_object() {
            return Err(ErrorData::invalid_params(
                format!(
                    "inputResponses.{key} must be an object (the client's result for that request)"
                ),
                None,
            ));
        }
    }
    let answers = request.input_responses.into_iter().collect();
    gw.tenant
        .tasks
        .answer_anywhere(&Owner::of(&ex.who), &request.task_id, answers)
        .await
        .map_err(|e| refused(&request.task_id, e))
}

/// `tasks/cancel`: a running task stops (its instance is dropped); a finished one stays.
pub(super) async fn cancel(
    gw: &Gateway,
    request: &CancelTaskParams,
    ex: &Exchange,
) -> Result<(), ErrorData> {
    lookup(gw, ex, &request.task_id).await?;
    gw.tenant
        .tasks
        .cancel_anywhere(&Owner::of(&ex.who), &request.task_id)
        .await
        .map_err(|e| refused(&request.task_id, e))?;
    tracing::info!(tenant = %gw.tenant.id(), caller = %ex.who.caller(), "task cancelled");
    Ok(())
}
