//! `tools/list` and `tools/call`.
//!
//! Owns: how a tool call's outcome becomes a protocol answer (a tool's own failure — bad
//! arguments, a crash, a timeout — is an `isError` result shown to the model; a protocol
//! problem is a JSON-RPC error); the tool's schemas applied on the way in (arguments that
//! break `inputSchema` are an `isError` result and the plugin is not called) and out
//! (structured output that breaks `outputSchema` is a logged plugin fault and never reaches
//! the client). Must not: decide access (`Gateway::authorize`) or compile schemas
//! (`plugins::schema`).

use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams,
};
use serde_json::Value;
use tracing::Instrument as _;

use super::call::Invocation;
use super::convert::{self, complete, model};
use super::era::Era;
use super::exchange::Exchange;
use super::gateway::Gateway;
use super::input::{Retry, RoundError, Rounds, Step};
use super::record::{Outcome, RequestRecord};
use super::refusal::{Refused, failed, unknown};
use super::tasks;
use crate::authz::Request;
use crate::downstream::Need;
use crate::plugins::{LoadedPlugin, Target};
use crate::sandbox::{SandboxError, wit};

/// `tools/list`: the tools this caller may see.
pub(super) fn list(
    gw: &Gateway,
    request: Option<&PaginatedRequestParams>,
    ex: &Exchange,
) -> Result<ListToolsResult, ErrorData> {
    // A caller that came with a token (an issuer vouched for it) is at a tenant using OAuth.
    let oauth = ex.who.issuer.is_some();
    gw.listing(ex, "tools/list", "tools", request, |catalog, visible| {
        catalog
            .tools()
            .filter(|(_, t)| visible(Target::Tool(&t.name)))
            .map(|(plugin, t)| convert::listed_tool(t, plugin.task_tools.get(&t.name), oauth))
            .collect()
    })
}

/// `tools/call`.
pub(super) async fn call(
    gw: &Gateway,
    mut request: CallToolRequestParams,
    ex: &Exchange,
) -> Result<CallToolResponse, ErrorData> {
    let name = request.name.to_string();
    let record = RequestRecord::start(&gw.tenant, ex, "tools/call", Some(&name));
    let catalog = gw.tenant.catalog();
    let plugin = match gw.decide(&catalog, &Request::of(&ex.who, Target::Tool(&name))) {
        Ok(permit) => permit.plugin,
        Err(refused) => {
            let owner = catalog.tool(&name).map(|(p, _)| p.name.clone());
            return refuse(&record, owner.as_deref(), refused);
        }
    };
    let arguments = Value::Object(request.arguments.take().unwrap_or_default());
    if let Some(schemas) = plugin.schemas.get(&name)
        && let Err(violations) = schemas.check_arguments(&arguments)
    {
        record.finish(Some(&plugin.name), Outcome::InvalidArguments);
        return Ok(CallToolResponse::Complete(complete(
            convert::error_result(&format!(
                "Invalid arguments for tool `{name}`: {violations}"
            )),
        )?));
    }
    record.note_arguments(&name, &arguments);
    // The second question, now that the arguments are known to be what the tool takes.
    let asked = Request::of(&ex.who, Target::Tool(&name)).with_arguments(&arguments);
    if let Err(refused) = gw.decide(&catalog, &asked) {
        return refuse(&record, Some(&plugin.name), refused);
    }
    let arguments = arguments.to_string();
    let retry = Retry {
        responses: request.input_responses.as_ref(),
        state: request.request_state.as_deref(),
    };
    if let Some(mode) = plugin.task_tools.get(&name).copied() {
        if tasks::negotiated(&ex.client_caps) {
            let response =
                tasks::call(gw, ex, plugin, &name, arguments, mode, retry, &record).await;
            let outcome = match &response {
                Ok(CallToolResponse::Task(_)) => Outcome::Task,
                Ok(CallToolResponse::InputRequired(_)) => Outcome::InputRequired,
                other => Outcome::of(other),
            };
            record.finish(Some(&plugin.name), outcome);
            return response;
        }
        if mode.required {
            record.finish(Some(&plugin.name), Outcome::Error);
            return Err(tasks::required());
        }
    }
    let rounds = gw
        .run(ex, plugin, &record, retry, |call, continuation| {
            invoke(call, name.clone(), arguments.clone(), continuation)
        })
        .instrument(record.span.clone())
        .await;
    // A downstream authorization server asked for the user: whatever the plugin made of
    // it, the client is told what to do (and, where its answer has not started, challenged).
    let rounds = match (rounds, ex.needs.need()) {
        (Ok(Rounds::Done(_)), Some(Need::StepUp(step))) => {
            Ok(Rounds::Done(super::refusal::step_up_result(&name, &step)))
        }
        (Ok(Rounds::Done(_)), Some(Need::Consent { service, url })) => {
            super::refusal::consent(gw, ex, &record, &name, &service, &url)
        }
        (rounds, _) => rounds,
    };
    let outcome = match &rounds {
        Ok(Rounds::Done(v)) if v["isError"] == true => Outcome::ToolError,
        Ok(Rounds::Done(_)) => Outcome::Ok,
        Ok(Rounds::InputRequired(_)) => Outcome::InputRequired,
        Err(RoundError::Rpc(_)) => Outcome::Error,
        Err(_) => Outcome::ToolError,
    };
    record.finish(Some(&plugin.name), outcome);
    answer(&name, rounds, ex.era)
}

/// A refused call, recorded and answered: an unknown (or hidden) tool's error, else the
/// refusal as the tool's `isError` result.
fn refuse(
    record: &RequestRecord,
    plugin: Option<&str>,
    refused: Refused,
) -> Result<CallToolResponse, ErrorData> {
    record.refused(plugin, &refused);
    match refused {
        Refused::Unknown(e, _) => Err(*e),
        Refused::Forbidden(msg, _) => Ok(CallToolResponse::Complete(complete(
            convert::error_result(&msg),
        )?)),
    }
}

/// One round of the plugin's `call-tool` export.
pub(super) async fn invoke(
    call: Invocation,
    name: String,
    arguments: String,
    continuation: Option<wit::Continuation>,
) -> Result<Step<Value>, RoundError> {
    let outcome = call
        .plugin
        .code
        .call_tool(
            &call.env,
            call.context,
            name.clone(),
            arguments,
            continuation,
        )
        .await;
    match outcome {
        Ok(Ok(wit::CallOutcome::Done(r))) => Ok(Step::Done(checked_result(
            &call.tenant,
            &call.plugin,
            &name,
            &r,
        ))),
        Ok(Ok(wit::CallOutcome::InputRequired(ir))) => Ok(Step::Input(ir)),
        Ok(Err(wit::ToolError::UnknownTool)) => Err(RoundError::Rpc(unknown(Target::Tool(&name)))),
        Ok(Err(wit::ToolError::InvalidArguments(m))) => Ok(Step::Done(convert::error_result(
            &format!("Invalid arguments for tool `{name}`: {m}"),
        ))),
        Ok(Err(wit::ToolError::Failed(m))) => Ok(Step::Done(convert::error_result(&m))),
        Err(SandboxError::Cancelled) => Err(RoundError::Rpc(ErrorData::internal_error(
            "request cancelled",
            None,
        ))),
        // A crash, timeout or memory exhaustion is the tool's failure, shown to the model.
        Err(e) => {
            let what = format!("Tool `{name}`");
            let error = failed(&call.tenant, &call.plugin, &what, &e, &call.trail);
            Ok(Step::Done(convert::error_result(&error.message)))
        }
    }
}

/// A finished tool's result, its structured output checked against its `outputSchema`: one
/// that does not match is the plugin's fault, logged for the operator, and the client gets
/// an `isError` result instead.
fn checked_result(tenant: &str, plugin: &LoadedPlugin, name: &str, r: &wit::ToolResult) -> Value {
    let result = convert::tool_result(r);
    if result["isError"] == true {
        return result;
    }
    let Some(schemas) = plugin.schemas.get(name) else {
        return result;
    };
    match schemas.check_output(result.get("structuredContent")) {
        Ok(()) => result,
        Err(violations) => {
            tracing::warn!(
                tenant,
                plugin = %plugin.name,
                tool = name,
                "plugin fault: a result does not match the tool's outputSchema ({}); \
                 the client got an error instead",
                crate::telemetry::untrusted(&violations.to_string()),
            );
            convert::error_result(&format!(
                "Tool `{name}` returned a result that does not match its outputSchema \
                 (a fault in plugin `{}`; the gateway's log has details)",
                plugin.name
            ))
        }
    }
}

/// The protocol answer for a tool call's rounds, in `era`.
pub(super) fn answer(
    name: &str,
    rounds: Result<Rounds<Value>, RoundError>,
    era: Era,
) -> Result<CallToolResponse, ErrorData> {
    let result = match (rounds, era) {
        (Ok(Rounds::Done(v)), _) => v,
        (Ok(Rounds::InputRequired(r)), _) => return Ok(CallToolResponse::InputRequired(r)),
        (Err(RoundError::MissingCapability(caps)), Era::Stateless) => {
            return Err(ErrorData::missing_required_client_capability(model(caps)?));
        }
        (Err(RoundError::MissingCapability(caps)), Era::Session) => convert::error_result(
            &format!("Tool `{name}` needs client capabilities this client did not declare: {caps}"),
        ),
        (Err(RoundError::Input(msg)), _) => {
            convert::error_result(&format!("Tool `{name}` could not get input: {msg}"))
        }
        (Err(RoundError::Rpc(e)), _) => return Err(e),
    };
    Ok(CallToolResponse::Complete(complete(result)?))
}
