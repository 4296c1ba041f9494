//! How the protocol layer answers a request the one authorization decision refused, or a
//! plugin that failed.
//!
//! Owns: the mapping of [`Forbidden`] to the protocol, in one place — an unknown or hidden
//! item gets its method's "unknown" error (byte for byte the same either way), a visible item
//! the caller may not use gets a refusal the handler wraps for its method (`isError` for
//! tools, `invalid_request` otherwise); the HTTP front answers scope refusals earlier with a
//! 403 step-up (`transport`). Also what the client is told when a downstream authorization
//! server asked for the user ([`StepUp`]): the tool's result, and the challenge for an
//! answer that has not started. Must not: decide access (`authz` does).

use rmcp::ErrorData;
use serde_json::json;

use super::gateway::Gateway;
use super::record::Outcome;
use crate::auth::{Denial, Principal};
use crate::authz::{Forbidden, Permit, Request};
use crate::downstream::StepUp;
use crate::plugins::{Catalog, LoadedPlugin, Target};
use crate::sandbox::SandboxError;
use crate::telemetry::untrusted;

/// A refused request, as the protocol layer answers it.
pub(super) enum Refused {
    /// The method's "unknown item" error (also for items hidden from this caller), and what
    /// refused it (for the record).
    Unknown(Box<ErrorData>, String),
    /// Why a visible item may not be used (an `isError` tool result, else `invalid_request`),
    /// and what refused it.
    Forbidden(String, String),
}

impl Refused {
    /// How the refused request is recorded.
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            Refused::Unknown(..) => Outcome::Unknown,
            Refused::Forbidden(..) => Outcome::Denied,
        }
    }

    /// What refused it: [`Forbidden::by`].
    pub(super) fn by(&self) -> &str {
        match self {
            Refused::Unknown(_, by) | Refused::Forbidden(_, by) => by,
        }
    }

    /// As a JSON-RPC error (prompts, resources, subscriptions, completion).
    pub(super) fn into_error(self) -> ErrorData {
        match self {
            Refused::Unknown(e, _) => *e,
            Refused::Forbidden(msg, _) => ErrorData::invalid_request(msg, None),
        }
    }
}

/// The "unknown item" error for `target`: the same whether it does not exist or is hidden.
pub(super) fn unknown(target: Target<'_>) -> ErrorData {
    match target {
        Target::Tool(name) => {
            ErrorData::invalid_params(format!("Unknown tool: {name}"), Some(json!({"name": name})))
        }
        Target::Prompt(name) => ErrorData::invalid_params(
            format!("Unknown prompt: {name}"),
            Some(json!({"name": name})),
        ),
        Target::Resource(uri) | Target::Template(uri) => {
            ErrorData::resource_not_found("Resource not found", Some(json!({"uri": uri})))
        }
    }
}

/// Log a sandbox failure with its tenant and plugin, note its cause in the request's
/// `trail`, and describe it for the client.
pub(super) fn failed(
    tenant: &str,
    plugin: &LoadedPlugin,
    what: &str,
    e: &SandboxError,
    trail: &crate::audit::Trail,
) -> ErrorData {
    trail.fault(e.cause());
    tracing::warn!(tenant, plugin = %plugin.name, "{what} failed: {e}");
    ErrorData::internal_error(format!("{what} failed: {e}"), None)
}

impl Gateway {
    /// The one authorization decision ([`crate::authz::TenantAuthz::decide`]) for this
    /// tenant, mapped to the protocol (see the module header).
    pub(super) fn authorize<'c>(
        &self,
        catalog: &'c Catalog,
        who: &Principal,
        target: Target<'_>,
    ) -> Result<Permit<'c>, Refused> {
        self.decide(catalog, &Request::of(who, target))
    }

    /// The decision on `request` (with its arguments, for a call's second question), mapped
    /// to the protocol.
    pub(super) fn decide<'c>(
        &self,
        catalog: &'c Catalog,
        request: &Request<'_>,
    ) -> Result<Permit<'c>, Refused> {
        self.tenant
            .authz
            .decide(catalog, request)
            .map_err(|f| refused(request.who, request.target, f))
    }
}

fn refused(who: &Principal, target: Target<'_>, forbidden: Forbidden) -> Refused {
    let by = forbidden.by();
    let what = match target {
        Target::Tool(n) => format!("tool `{n}`"),
        Target::Prompt(n) => format!("prompt `{n}`"),
        Target::Resource(_) | Target::Template(_) => "this resource".to_string(),
    };
    match forbidden {
        Forbidden::Unknown | Forbidden::Hidden(_) => {
            Refused::Unknown(Box::new(unknown(target)), by)
        }
        Forbidden::Scopes { missing, .. } => {
            tracing::info!(tenant = %who.tenant, caller = %who.caller(),
                "denied {}: missing scopes {missing:?}", untrusted(&what));
            Refused::Forbidden(
                format!(
                    "Forbidden: {what} requires the scope(s) {}",
                    missing.join(" ")
                ),
                by,
            )
        }
        Forbidden::Claim(why) => {
            tracing::info!(tenant = %who.tenant, caller = %who.caller(),
                "denied {} by a claim rule: {why}", untrusted(&what));
            Refused::Forbidden(
                format!("Forbidden: {what} is not available to this caller ({why})"),
                by,
            )
        }
        // Logged where the policies decided.
        Forbidden::Policy(refusal) => {
            Refused::Forbidden(format!("Forbidden: {what} is refused by {refusal}"), by)
        }
    }
}

/// The tool result when a downstream authorization server asked for the user during a call
/// of `tool` (whatever the plugin made of it).
pub(super) fn step_up_result(tool: &str, step: &StepUp) -> serde_json::Value {
    super::convert::error_result(&format!(
        "Tool `{tool}` needs you to sign in again: the authorization server for `{}` asked for it ({}: {})",
        step.service, step.error, step.description
    ))
}

/// The challenge for it, for an answer that has not started: `insufficient_scope` (403)
/// naming the scopes the service needs when the caller's token lacks them (an exchange may
/// only narrow it), else a fresh sign-in (RFC 9470, 401).
pub(super) fn step_up_denial(step: &StepUp) -> Denial {
    if !step.scopes.is_empty() {
        return Denial::InsufficientScope {
            required: step.scopes.clone(),
        };
    }
    Denial::UserAuthentication {
        description: format!(
            "the authorization server for `{}` needs you to sign in again ({}: {})",
            step.service, step.error, step.description
        ),
        claims: step.claims.clone(),
    }
}

/// The input request key of the host's own consent question (never a plugin's: plugins'
/// answers are theirs, this one is the host's).
pub(super) const CONSENT_KEY: &str = "portcullis/consent";

/// The answer to a tool call that needs the user's consent at `service`'s provider, given at
/// `url`: a URL elicitation in the caller's era when the client takes them (2025-11-25: the
/// `-32042` error; 2026-07-28: an input round whose retry runs the call again), else a tool
/// result showing the link.
pub(super) fn consent(
    gw: &Gateway,
    ex: &super::exchange::Exchange,
    record: &super::record::RequestRecord,
    tool: &str,
    service: &str,
    url: &str,
) -> Result<super::input::Rounds<serde_json::Value>, super::input::RoundError> {
    use super::era::Era;
    use super::input::{Question, Rounds};
    let message = format!(
        "Tool `{tool}` uses `{service}` for you: connect your account there first (open the link, sign in, and allow it), then try again."
    );
    let takes_urls = ex.client_caps["elicitation"].get("url").is_some();
    if !takes_urls {
        return Ok(Rounds::Done(super::convert::error_result(&format!(
            "{message} {url}"
        ))));
    }
    match ex.era {
        Era::Session => {
            let elicitation_id = hex::encode(rand::random::<[u8; 16]>());
            // Told when the consent completes (notifications/elicitation/complete).
            if let Some(peer) = &ex.session_peer {
                gw.tenant
                    .await_consent(&ex.who, service, &elicitation_id, peer.clone());
            }
            Err(super::input::RoundError::Rpc(ErrorData::new(
                rmcp::model::ErrorCode(-32042),
                message.clone(),
                Some(json!({"elicitations": [{
                    "mode": "url",
                    "elicitationId": elicitation_id,
                    "url": url,
                    "message": message,
                }]})),
            )))
        }
        Era::Stateless => {
            let question = Question {
                key: CONSENT_KEY.into(),
                method: "elicitation/create",
                params: json!({"mode": "url", "message": message, "url": url}),
            };
            let binding = super::input::binding(ex, record);
            gw.input_required(&binding, vec![question], None)
                .map(Rounds::InputRequired)
        }
    }
}
