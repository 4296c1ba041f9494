//! `completion/complete`: argument completion for prompts and resource templates.
//!
//! Owns: reading the completion reference and shaping the answer (at most 100 values).
//! Must not: decide access (`Gateway::authorize`).

use rmcp::ErrorData;
use rmcp::model::{CompleteRequestParams, CompleteResult};
use serde_json::{Value, json};

use super::convert::{self, complete};
use super::exchange::Exchange;
use super::gateway::Gateway;
use super::record::{Outcome, RequestRecord};
use super::refusal::{Refused, failed};
use crate::plugins::Target;
use crate::sandbox::wit;

/// Most values one completion answer carries (the protocol's limit).
const MAX_VALUES: usize = 100;

/// `completion/complete`.
pub(super) async fn complete_argument(
    gw: &Gateway,
    request: CompleteRequestParams,
    ex: &Exchange,
) -> Result<CompleteResult, ErrorData> {
    let req = serde_json::to_value(&request).unwrap_or_default();
    let (target, reference) = reference(&req["ref"])?;
    let record = RequestRecord::start(&gw.tenant, ex, "completion/complete", None);
    let catalog = gw.tenant.catalog();
    let plugin = match gw.authorize(&catalog, &ex.who, target) {
        Ok(permit) => permit.plugin.clone(),
        // An unknown template has nothing to complete (not an error in the protocol).
        Err(Refused::Unknown(..)) if matches!(target, Target::Template(_)) => {
            record.finish(None, Outcome::Ok);
            return nothing();
        }
        Err(refused) => {
            record.refused(None, &refused);
            return Err(refused.into_error());
        }
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let argument = (
        text(&req["argument"]["name"]),
        text(&req["argument"]["value"]),
    );
    let context = convert::prompt_arguments(req["context"]["arguments"].as_object());
    let call = gw.invocation(ex, &plugin, &record);
    let outcome = plugin
        .code
        .complete(&call.env, call.context, reference, argument, context)
        .await;
    let result = match outcome {
        Ok(Some(Ok(r))) => answer(r),
        Ok(None) => nothing(),
        Ok(Some(Err(m))) => Err(ErrorData::internal_error(
            format!("completion failed: {m}"),
            None,
        )),
        Err(e) => Err(failed(
            gw.tenant.id(),
            &plugin,
            "completion",
            &e,
            &record.trail,
        )),
    };
    record.finish(Some(&plugin.name), Outcome::of(&result));
    result
}

/// What a completion `ref` names.
fn reference(r: &Value) -> Result<(Target<'_>, wit::Reference), ErrorData> {
    match r["type"].as_str() {
        Some("ref/prompt") => {
            let name = r["name"].as_str().unwrap_or_default();
            Ok((Target::Prompt(name), wit::Reference::Prompt(name.into())))
        }
        Some("ref/resource") => {
            let uri = r["uri"].as_str().unwrap_or_default();
            let reference = wit::Reference::ResourceTemplate(uri.into());
            Ok((Target::Template(uri), reference))
        }
        _ => Err(ErrorData::invalid_params(
            "unknown completion reference type",
            None,
        )),
    }
}

fn answer(r: wit::CompletionResult) -> Result<CompleteResult, ErrorData> {
    let mut values = r.values;
    values.truncate(MAX_VALUES);
    let mut completion = json!({"values": values, "hasMore": r.has_more});
    if let Some(total) = r.total {
        completion["total"] = total.into();
    }
    complete(json!({ "completion": completion }))
}

fn nothing() -> Result<CompleteResult, ErrorData> {
    complete(json!({"completion": {"values": [], "hasMore": false}}))
}
