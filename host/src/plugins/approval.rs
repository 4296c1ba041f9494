//! Approvals bound to the exact call (#32): RFC 9396 authorization details a tool requires.
//!
//! Owns: what an approval rule says (`ApprovalRule`: the `type`, the arguments it binds or the
//! digest of all of them, single use, maximum age), the authorization details that would
//! authorize exactly one call ([`ApprovalRule::details_for`], what a refusal's remediation
//! carries), and whether the details a token carries authorize the call it came with
//! ([`ApprovalRule::matching`]) — judged against the call itself, never against what an earlier
//! refusal asked for. Must not: read tokens, spend approvals or answer refusals (`auth` and
//! the front do).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// One tool's approval requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// The `authorization_details` `type` the approval carries, e.g. `payment_refund`.
    pub kind: String,
    /// The arguments whose values the approval binds; empty: the digest of all arguments.
    pub bind: Vec<String>,
    /// One approval, one call.
    pub single_use: bool,
    /// How long after the token carrying it was issued an approval may be used, in seconds.
    pub max_age_secs: u64,
}

/// The canonical JSON of `value` (object members sorted by name, no whitespace): what the
/// argument digest is taken over, whatever order a client wrote the members in.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The digest of a call's arguments: `sha256:<hex>` of their canonical JSON.
pub fn arguments_digest(arguments: &Value) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical(arguments)))
    )
}

impl ApprovalRule {
    /// What the approval binds of `arguments`: the named arguments' values (absent ones as
    /// `null`), or the digest of them all.
    fn bound(&self, arguments: &Value) -> (&'static str, Value) {
        if self.bind.is_empty() {
            return (
                "arguments_digest",
                Value::String(arguments_digest(arguments)),
            );
        }
        let values: Map<String, Value> = self
            .bind
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    arguments.get(name).cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        ("arguments", Value::Object(values))
    }

    /// The `authorization_details` that would authorize exactly the call of `tool` with
    /// `arguments` at `resource` (the tenant's resource URL): one entry of this rule's type.
    pub fn details_for(&self, tool: &str, arguments: &Value, resource: &str) -> Value {
        let (field, bound) = self.bound(arguments);
        let mut entry = json!({
            "type": self.kind,
            "locations": [resource],
            "actions": ["tools/call"],
            "tool": tool,
        });
        entry[field] = bound;
        json!([entry])
    }

    /// The entry of `granted` (a token's `authorization_details`) that authorizes the call of
    /// `tool` with `arguments` at `resource`, if any: this rule's type, `resource` among its
    /// `locations`, the same tool, and the same bound values (or digest). Nothing else in the
    /// entry matters, and nothing a refusal said: only the call at hand.
    pub fn matching<'g>(
        &self,
        granted: &'g Value,
        tool: &str,
        arguments: &Value,
        resource: &str,
    ) -> Option<&'g Value> {
        let (field, bound) = self.bound(arguments);
        granted.as_array()?.iter().find(|entry| {
            entry["type"] == self.kind.as_str()
                && entry["locations"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x == resource))
                && entry["tool"] == tool
                && entry["actions"]
                    .as_array()
                    .is_none_or(|a| a.iter().any(|x| x == "tools/call"))
                && entry[field] == bound
        })
    }

    /// Whether an approval in a token issued at `issued_at` may still be used at `now`.
    pub fn fresh(&self, issued_at: Option<u64>, now: u64) -> bool {
        issued_at.is_some_and(|iat| iat <= now + 60 && now.saturating_sub(iat) <= self.max_age_secs)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RESOURCE: &str = "https://gw.example/mcp";

    fn refund() -> ApprovalRule {
        ApprovalRule {
            kind: "payment_refund".into(),
            bind: vec!["amount".into(), "currency".into(), "account".into()],
            single_use: true,
            max_age_secs: 300,
        }
    }

    #[test]
    fn the_remediation_authorizes_exactly_the_call_and_nothing_near_it() {
        let rule = refund();
        let call = json!({"amount": "120.00", "currency": "EUR", "account": "DE02", "memo": "x"});
        let details = rule.details_for("payments.refund", &call, RESOURCE);
        assert_eq!(
            details,
            json!([{"type": "payment_refund", "locations": [RESOURCE], "actions": ["tools/call"],
                    "tool": "payments.refund",
                    "arguments": {"amount": "120.00", "currency": "EUR", "account": "DE02"}}])
        );
        assert!(
            rule.matching(&details, "payments.refund", &call, RESOURCE)
                .is_some()
        );
        // An unbound argument may change; a bound one may not.
        let memo = json!({"amount": "120.00", "currency": "EUR", "account": "DE02", "memo": "y"});
        assert!(
            rule.matching(&details, "payments.refund", &memo, RESOURCE)
                .is_some()
        );
        for (tool, args, resource) in [
            (
                "payments.refund",
                json!({"amount": "121.00", "currency": "EUR", "account": "DE02"}),
                RESOURCE,
            ),
            (
                "payments.refund",
                json!({"amount": "120.00", "currency": "EUR", "account": "DE03"}),
                RESOURCE,
            ),
            (
                "payments.refund",
                json!({"amount": "120.00", "currency": "EUR"}),
                RESOURCE,
            ),
            ("payments.payout", call.clone(), RESOURCE),
            (
                "payments.refund",
                call.clone(),
                "https://gw.example/t/other/mcp",
            ),
        ] {
            assert!(
                rule.matching(&details, tool, &args, resource).is_none(),
                "{tool} {args} {resource}"
            );
        }
        let mut other_type = details.clone();
        other_type[0]["type"] = json!("payment_initiation");
        assert!(
            rule.matching(&other_type, "payments.refund", &call, RESOURCE)
                .is_none()
        );
        let mut other_action = details.clone();
        other_action[0]["actions"] = json!(["tools/list"]);
        assert!(
            rule.matching(&other_action, "payments.refund", &call, RESOURCE)
                .is_none()
        );
        assert!(
            rule.matching(
                &json!({"not": "a list"}),
                "payments.refund",
                &call,
                RESOURCE
            )
            .is_none()
        );
    }

    #[test]
    fn a_digest_binds_every_argument_whatever_their_order() {
        let rule = ApprovalRule {
            bind: vec![],
            ..refund()
        };
        let a = json!({"b": [1, {"y": 2, "x": 1}], "a": "s"});
        let b: Value = serde_json::from_str(r#"{"a":"s","b":[1,{"x":1,"y":2}]}"#).unwrap();
        assert_eq!(arguments_digest(&a), arguments_digest(&b));
        let details = rule.details_for("t", &a, RESOURCE);
        assert!(rule.matching(&details, "t", &b, RESOURCE).is_some());
        assert!(
            rule.matching(&details, "t", &json!({"a": "s", "b": [1]}), RESOURCE)
                .is_none()
        );
    }

    #[test]
    fn an_approval_is_used_within_its_age() {
        let rule = refund();
        assert!(rule.fresh(Some(1000), 1200));
        assert!(!rule.fresh(Some(1000), 1301));
        assert!(!rule.fresh(None, 1000));
        assert!(!rule.fresh(Some(2000), 1000), "issued in the future");
    }
}
