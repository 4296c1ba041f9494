//! Every authorization decision (#33): may this caller do this to this item — with these
//! arguments, now?
//!
//! Owns: the decision's input ([`Request`]: the principal, the target — which names the
//! action: a tool's call, a resource's read, a prompt's get — and the arguments when the
//! request has them), the built-in rules (the scopes an item declares, the
//! operator's claim rules), the tenant's Cedar policies ([`policy`]: loaded, validated
//! against the schema generated from the catalog, enforced or in shadow, reloaded when their
//! files change), and the outcome ([`Permit`], [`Forbidden`]). Lists ask without arguments,
//! calls ask again with them after the schema check. Must not: answer refusals (the front
//! and `mcp::refusal` do), find items other than through the catalog, or read tokens.

pub mod cases;
mod memo;
pub mod policy;
mod schema;

use std::sync::Arc;

use serde_json::Value;

use crate::auth::Principal;
use crate::config::ToolsList;
pub use crate::plugins::Target;
use crate::plugins::{Catalog, ClaimRule, LoadedPlugin};
pub use policy::approval_type;

/// One authorization question.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who asks.
    pub who: &'a Principal,
    /// What for: a tool (its call), a prompt (its get), a resource or template (its read).
    pub target: Target<'a>,
    /// Where the question stands with the call's arguments.
    pub arguments: Arguments<'a>,
}

/// Whether a question carries the arguments of the call it is about. A call is asked twice:
/// first without them, as its tool's place in a list is (so what a list hides is unknown to
/// a call too, before its arguments are even looked at), then with them once they passed the
/// tool's schema check. An argument rule is therefore a `forbid` that applies when the
/// context has arguments.
#[derive(Debug, Clone, Copy)]
pub enum Arguments<'a> {
    /// A list, a read, a prompt, a completion, or a call before its arguments are checked.
    None,
    /// The call's arguments, which passed the schema check.
    Given(&'a Value),
}

impl<'a> Request<'a> {
    /// `who` about `target`: the whole decision, without arguments.
    pub fn of(who: &'a Principal, target: Target<'a>) -> Self {
        Self {
            who,
            target,
            arguments: Arguments::None,
        }
    }

    /// The same question with the call's `arguments`.
    #[must_use]
    pub fn with_arguments(self, arguments: &'a Value) -> Self {
        Self {
            arguments: Arguments::Given(arguments),
            ..self
        }
    }
}

/// Proof that a caller may use a target, and the plugin that serves it. Only
/// [`TenantAuthz::decide`] makes one.
#[derive(Debug)]
#[non_exhaustive]
pub struct Permit<'c> {
    /// The plugin serving the target.
    pub plugin: &'c Arc<LoadedPlugin>,
}

/// Why a caller may not use a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// No such item — or, where callers see only what they may use, one they may not use:
    /// both answer alike, so a hidden item's existence and scopes are not disclosed.
    #[error("unknown")]
    Unknown,
    /// The caller lacks scopes the item declares (a client can step up).
    #[error("requires the scope(s) {}", .missing.join(" "))]
    Scopes {
        /// Every scope the item needs.
        required: Vec<String>,
        /// The ones the caller lacks.
        missing: Vec<String>,
    },
    /// A claim rule of the operator's refuses this caller.
    #[error("is not available to this caller ({0})")]
    Claim(ClaimRule),
    /// The tenant's policies refuse it.
    #[error("is refused by {0}")]
    Policy(policy::Refusal),
    /// Refused for this reason, and shown to the caller as [`Forbidden::Unknown`] (lists show
    /// only what callers may use).
    #[error("unknown")]
    Hidden(Box<Forbidden>),
}

impl Forbidden {
    /// What refused, in a word or an id, for records and operators' tests: a policy's id
    /// (several joined by `, `), `scope`, `claim`, `no-permit`, `failed` (a policy that could
    /// not decide), or `unknown` (no such item). A hidden refusal names its reason.
    pub fn by(&self) -> String {
        match self {
            Forbidden::Unknown => "unknown".into(),
            Forbidden::Scopes { .. } => "scope".into(),
            Forbidden::Claim(_) => "claim".into(),
            Forbidden::Policy(policy::Refusal::Forbidden(ids)) => ids.join(", "),
            Forbidden::Policy(policy::Refusal::NotPermitted) => "no-permit".into(),
            Forbidden::Policy(policy::Refusal::Failed(_)) => "failed".into(),
            Forbidden::Hidden(why) => why.by(),
        }
    }

    /// Whether the caller is told the item does not exist.
    pub fn shown_as_unknown(&self) -> bool {
        matches!(self, Forbidden::Unknown | Forbidden::Hidden(_))
    }
}

/// One tenant's authorization: its listing mode and its policies, if it has any.
#[derive(Debug)]
pub struct TenantAuthz {
    tenant: Arc<str>,
    /// What lists show.
    pub listing: ToolsList,
    policies: Option<Arc<policy::TenantPolicies>>,
}

impl TenantAuthz {
    /// Authorization for `tenant` with the built-in rules only.
    pub fn new(tenant: Arc<str>, listing: ToolsList) -> Self {
        Self {
            tenant,
            listing,
            policies: None,
        }
    }

    /// Also ask `policies`.
    #[must_use]
    pub fn with_policies(mut self, policies: Arc<policy::TenantPolicies>) -> Self {
        self.policies = Some(policies);
        self
    }

    /// The tenant's policies, if it has any (for the inventory and reloads).
    pub fn policies(&self) -> Option<&policy::TenantPolicies> {
        self.policies.as_deref()
    }

    /// The one authorization decision: may `request.who` use `request.target`? Every path
    /// asks it — lists (what is visible), calls (once without their arguments, once with
    /// them: see [`Arguments`]), reads, subscriptions, completions — so they all answer the
    /// same. First the
    /// item's scopes (a missing one is a step-up), then the operator's claim rules, then the
    /// tenant's policies. With `listing = Permitted` a denial is [`Forbidden::Hidden`],
    /// indistinguishable from an item that does not exist.
    pub fn decide<'c>(
        &self,
        catalog: &'c Catalog,
        request: &Request<'_>,
    ) -> Result<Permit<'c>, Forbidden> {
        let (plugin, required) = catalog.lookup(request.target).ok_or(Forbidden::Unknown)?;
        let who = request.who;
        let missing = who.missing_scopes(required);
        let denied = if !missing.is_empty() {
            Some(Forbidden::Scopes {
                required: required.to_vec(),
                missing: missing.into_iter().map(str::to_string).collect(),
            })
        } else if let Target::Tool(name) = request.target
            && let Err(rule) = plugin.claims_permit(name, &who.claims)
        {
            Some(Forbidden::Claim(rule))
        } else {
            self.policies
                .as_ref()
                .and_then(|p| p.decide(&self.tenant, catalog, plugin, request).err())
                .map(Forbidden::Policy)
        };
        match (denied, self.listing) {
            (None, _) => Ok(Permit { plugin }),
            (Some(f), ToolsList::Permitted) => Err(Forbidden::Hidden(Box::new(f))),
            (Some(f), ToolsList::All) => Err(f),
        }
    }

    /// Whether `target` appears in `who`'s lists: everything that exists with
    /// `listing = All` (scopes shown so clients can step up), only permitted items otherwise.
    pub fn visible(&self, catalog: &Catalog, who: &Principal, target: Target<'_>) -> bool {
        !self
            .decide(catalog, &Request::of(who, target))
            .is_err_and(|f| f.shown_as_unknown())
    }
}
