//! Operators' own tests of a tenant's authorization (`portcullis policy test FILE`, #33): a
//! file of request descriptions, each with the decision it must get.
//!
//! Owns: the case format (JSON: an array of `{"name", "caller": {"subject", "issuer",
//! "client_id", "scopes", "claims", "credential", "address"}, "tool" | "prompt" | "resource",
//! "arguments", "expect": "allow" | "deny", "by"}`), building each case's caller and question,
//! and judging the decision against it. The decision is the gateway's own
//! ([`TenantAuthz::decide`]: scopes, claim rules, then the policies), over the tenant's
//! plugins as the configuration loads them. Must not: serve, or read tokens.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{Request, TenantAuthz};
use crate::auth::{Principal, Scheme};
use crate::config::Identity;
use crate::plugins::{Catalog, Target};

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What it checks, for the report.
    pub name: String,
    /// Who asks.
    #[serde(default)]
    pub caller: Caller,
    /// A tool (its call).
    pub tool: Option<String>,
    /// A prompt (its get).
    pub prompt: Option<String>,
    /// A resource URI (its read).
    pub resource: Option<String>,
    /// The call's arguments (a tool's): asked as the gateway asks after the schema check.
    pub arguments: Option<Value>,
    /// `allow` or `deny`.
    pub expect: Expect,
    /// For a denial: the policy id that must refuse it, or `scope`, `claim`, `unknown`,
    /// `no-permit`.
    pub by: Option<String>,
}

/// A case's caller.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caller {
    /// `sub`.
    pub subject: Option<String>,
    /// The issuer that vouched for it (default `https://issuer.example`).
    pub issuer: Option<String>,
    /// The OAuth client.
    pub client_id: Option<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims (`auth.claims`), as the token would carry them.
    #[serde(default)]
    pub claims: serde_json::Map<String, Value>,
    /// `bearer` (default) or `dpop`.
    pub credential: Option<String>,
    /// The address the request comes from (`context.client_address`).
    pub address: Option<std::net::IpAddr>,
}

/// The decision a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Permitted.
    Allow,
    /// Refused.
    Deny,
}

/// A case's outcome: `Ok` with what was decided, or `Err` with how it differs.
pub type Outcome = Result<String, String>;

/// Parse a cases file.
pub fn parse(text: &str) -> Result<Vec<Case>, String> {
    serde_json::from_str(text).map_err(|e| format!("the cases are not a JSON array of cases: {e}"))
}

/// Run `case` against `authz` over `catalog` (of `tenant`).
pub fn run(tenant: &str, authz: &TenantAuthz, catalog: &Catalog, case: &Case) -> Outcome {
    let who = caller(tenant, &case.caller)?;
    let target = match (&case.tool, &case.prompt, &case.resource) {
        (Some(t), None, None) => Target::Tool(t),
        (None, Some(p), None) => Target::Prompt(p),
        (None, None, Some(r)) => Target::Resource(r),
        _ => return Err("name exactly one of tool, prompt, resource".into()),
    };
    let mut request = Request::of(&who, target);
    if let Some(arguments) = &case.arguments {
        request = request.with_arguments(arguments);
    }
    // A call is asked twice, as the gateway asks it: without, then with its arguments.
    let decided = authz
        .decide(catalog, &Request::of(&who, target))
        .and_then(|_| authz.decide(catalog, &request))
        .map(|_| ());
    let got = match &decided {
        Ok(()) => "allow".to_string(),
        Err(f) => format!("deny ({})", f.by()),
    };
    match (case.expect, decided) {
        (Expect::Allow, Ok(())) => Ok(got),
        (Expect::Deny, Err(f)) if case.by.as_ref().is_none_or(|b| *b == f.by()) => Ok(got),
        (Expect::Deny, Err(_)) => Err(format!(
            "expected deny by {}, got {got}",
            case.by.as_deref().unwrap_or("anything")
        )),
        (Expect::Allow, Err(_)) => Err(format!("expected allow, got {got}")),
        (Expect::Deny, Ok(())) => Err("expected deny, got allow".into()),
    }
}

/// The principal a case describes.
fn caller(tenant: &str, c: &Caller) -> Result<Principal, String> {
    let mut who = Principal::from_identity(
        Arc::from(tenant),
        &Identity {
            subject: c.subject.clone().unwrap_or_default(),
            scopes: c.scopes.clone(),
        },
    );
    if c.subject.is_none() {
        who.subject = None;
    }
    who.issuer = Some(Arc::from(
        c.issuer.as_deref().unwrap_or("https://issuer.example"),
    ));
    who.client_id.clone_from(&c.client_id);
    who.credential = Some(match c.credential.as_deref() {
        None | Some("bearer") => Scheme::Bearer,
        Some("dpop") => Scheme::Dpop,
        Some(other) => return Err(format!("credential `{other}` is not bearer or dpop")),
    });
    who.claims = c
        .claims
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    who.address = c.address;
    Ok(who)
}
