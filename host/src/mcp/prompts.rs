//! `prompts/list` and `prompts/get`.
//!
//! Owns: how a prompt's outcome becomes a protocol answer. Must not: decide access
//! (`Gateway::authorize`).

use rmcp::ErrorData;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, ListPromptsResult,
    PaginatedRequestParams,
};
use serde_json::Value;

use super::call::Invocation;
use super::convert;
use super::exchange::Exchange;
use super::gateway::Gateway;
use super::input::{Retry, RoundError, Step};
use super::refusal::failed;
use crate::plugins::Target;
use crate::sandbox::wit;

/// `prompts/list`: the prompts this caller may see.
pub(super) fn list(
    gw: &Gateway,
    request: Option<&PaginatedRequestParams>,
    ex: &Exchange,
) -> Result<ListPromptsResult, ErrorData> {
    gw.listing(
        ex,
        "prompts/list",
        "prompts",
        request,
        |catalog, visible| {
            catalog
                .prompts()
                .filter(|(_, t)| visible(Target::Prompt(&t.name)))
                .map(|(_, t)| convert::prompt(t))
                .collect()
        },
    )
}

/// `prompts/get`.
pub(super) async fn get(
    gw: &Gateway,
    request: GetPromptRequestParams,
    ex: &Exchange,
) -> Result<GetPromptResponse, ErrorData> {
    let name = request.name.clone();
    let arguments = convert::prompt_arguments(request.arguments.as_ref());
    let retry = Retry {
        responses: request.input_responses.as_ref(),
        state: request.request_state.as_deref(),
    };
    gw.answer_with_input::<GetPromptResponse, GetPromptResult, _, _>(
        ex,
        "prompts/get",
        Target::Prompt(&name),
        retry,
        |call, continuation| invoke(call, name.clone(), arguments.clone(), continuation),
    )
    .await
}

/// One round of the plugin's `get-prompt` export.
async fn invoke(
    call: Invocation,
    name: String,
    arguments: Vec<(String, String)>,
    continuation: Option<wit::Continuation>,
) -> Result<Step<Value>, RoundError> {
    let outcome = call
        .plugin
        .code
        .get_prompt(
            &call.env,
            call.context,
            name.clone(),
            arguments,
            continuation,
        )
        .await;
    let rpc = |e: ErrorData| Err(RoundError::Rpc(e));
    match outcome {
        Ok(Ok(wit::GetOutcome::Done(r))) => Ok(Step::Done(convert::prompt_result(&r))),
        Ok(Ok(wit::GetOutcome::InputRequired(ir))) => Ok(Step::Input(ir)),
        Ok(Err(wit::PromptError::UnknownPrompt)) => rpc(ErrorData::invalid_params(
            format!("Unknown prompt: {name}"),
            None,
        )),
        Ok(Err(wit::PromptError::InvalidArguments(m))) => rpc(ErrorData::invalid_params(
            format!("Invalid arguments for prompt `{name}`: {m}"),
            None,
        )),
        Ok(Err(wit::PromptError::Failed(m))) => rpc(ErrorData::internal_error(
            format!("prompt `{name}` failed: {m}"),
            None,
        )),
        Err(e) => rpc(failed(
            &call.tenant,
            &call.plugin,
            &format!("prompt `{name}`"),
            &e,
            &call.trail,
        )),
    }
}
