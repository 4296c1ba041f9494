//! `resources/list`, `resources/templates/list`, `resources/read`, and the 2025 session's
//! `resources/subscribe` / `unsubscribe`.
//!
//! Owns: how a read's outcome becomes a protocol answer. Must not: decide access
//! (`Gateway::authorize`) or keep subscriptions (`crate::sessions::SessionState`).

use rmcp::ErrorData;
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, SubscribeRequestParams,
};
use serde_json::{Value, json};

use super::call::Invocation;
use super::convert;
use super::exchange::Exchange;
use super::gateway::Gateway;
use super::input::{Retry, RoundError, Step};
use super::refusal::{Refused, failed, unknown};
use crate::plugins::Target;
use crate::sandbox::wit;

/// `resources/list`: the resources this caller may see.
pub(super) fn list(
    gw: &Gateway,
    request: Option<&PaginatedRequestParams>,
    ex: &Exchange,
) -> Result<ListResourcesResult, ErrorData> {
    gw.listing(
        ex,
        "resources/list",
        "resources",
        request,
        |catalog, visible| {
            catalog
                .resources()
                .filter(|(_, t)| visible(Target::Resource(&t.uri)))
                .map(|(_, t)| convert::resource(t))
                .collect()
        },
    )
}

/// `resources/templates/list`: the templates this caller may see.
pub(super) fn templates(
    gw: &Gateway,
    request: Option<&PaginatedRequestParams>,
    ex: &Exchange,
) -> Result<ListResourceTemplatesResult, ErrorData> {
    gw.listing(
        ex,
        "resources/templates/list",
        "resourceTemplates",
        request,
        |catalog, visible| {
            catalog
                .templates()
                .filter(|(_, t)| visible(Target::Template(&t.uri_template)))
                .map(|(_, t)| convert::resource_template(t))
                .collect()
        },
    )
}

/// `resources/read`.
pub(super) async fn read(
    gw: &Gateway,
    request: ReadResourceRequestParams,
    ex: &Exchange,
) -> Result<ReadResourceResponse, ErrorData> {
    let uri = request.uri.clone();
    let retry = Retry {
        responses: request.input_responses.as_ref(),
        state: request.request_state.as_deref(),
    };
    gw.answer_with_input::<ReadResourceResponse, ReadResourceResult, _, _>(
        ex,
        "resources/read",
        Target::Resource(&uri),
        retry,
        |call, continuation| invoke(call, uri.clone(), continuation),
    )
    .await
}

/// One round of the plugin's `read-resource` export.
async fn invoke(
    call: Invocation,
    uri: String,
    continuation: Option<wit::Continuation>,
) -> Result<Step<Value>, RoundError> {
    let outcome = call
        .plugin
        .code
        .read_resource(&call.env, call.context, uri.clone(), continuation)
        .await;
    let rpc = |e: ErrorData| Err(RoundError::Rpc(e));
    match outcome {
        Ok(Ok(wit::ReadOutcome::Done(contents))) if !contents.is_empty() => {
            let contents: Vec<Value> = contents.iter().map(convert::resource_contents).collect();
            Ok(Step::Done(json!({ "contents": contents })))
        }
        Ok(Ok(wit::ReadOutcome::Done(_)) | Err(wit::ResourceError::NotFound)) => {
            rpc(unknown(Target::Resource(&uri)))
        }
        Ok(Ok(wit::ReadOutcome::InputRequired(ir))) => Ok(Step::Input(ir)),
        Ok(Err(wit::ResourceError::Failed(m))) => rpc(ErrorData::internal_error(
            format!("reading {uri} failed: {m}"),
            None,
        )),
        Err(e) => rpc(failed(
            &call.tenant,
            &call.plugin,
            &format!("reading {uri}"),
            &e,
            &call.trail,
        )),
    }
}

/// `resources/subscribe` (2025 sessions): remembered with the caller, authorized now and
/// again at every update.
pub(super) fn subscribe(
    gw: &Gateway,
    request: SubscribeRequestParams,
    ex: &Exchange,
) -> Result<(), ErrorData> {
    let catalog = gw.tenant.catalog();
    gw.authorize(&catalog, &ex.who, Target::Resource(&request.uri))
        .map_err(Refused::into_error)?;
    gw.session.subscribe(request.uri, ex.who.clone());
    Ok(())
}
