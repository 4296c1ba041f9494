//! Approvals bound to the exact call (#32): RFC 9396 authorization details a tool requires.
//!
//! Owns: what an approval rule says (`ApprovalRule`: the `type`, the arguments it binds or the
//! digest of all of them, single use, maximum age) and which rules are well formed
//! ([`ApprovalRule::check`], for plugins' declarations and the operator's alike); the
//! authorization details that would authorize exactly one call ([`ApprovalRule::details_for`],
//! what a refusal's remediation carries); and whether the details a token carries authorize
//! the call it came with ([`ApprovalRule::matching`]) — judged against the call itself, never
//! against what an earlier refusal asked for. Shared by the resource server (which enforces
//! the rules) and the development AS (which grants them). Must not: read tokens, spend
//! approvals or answer refusals (`auth` and the front do), or know where a rule was declared
//! (`plugins`).

use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The longest an approval may be used after its token was issued: a day.
pub const MAX_AGE_LIMIT_SECS: u64 = 86_400;
/// The most arguments one rule may bind.
const MAX_BOUND: usize = 32;

/// One tool's approval requirement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRule {
    /// The `authorization_details` `type` the approval carries, e.g. `payment_refund`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The arguments whose values the approval binds; empty: the digest of all arguments.
    pub bind: Vec<String>,
    /// One approval, one call.
    pub single_use: bool,
    /// How long after the token carrying it was issued an approval may be used, in seconds.
    pub max_age_secs: u64,
}

/// A rule in force for one tool.
#[derive(Debug, Clone)]
pub struct Declared {
    /// The tool.
    pub tool: String,
    /// Its title, for people.
    pub title: Option<String>,
    /// What approving one of its calls takes.
    pub rule: ApprovalRule,
}

/// Where the rules currently in force come from (the tenants' catalogs; they change on
/// reload). The development AS grants what they name.
pub type DeclaredApprovals = Arc<dyn Fn() -> Vec<Declared> + Send + Sync>;

/// The call an approval must authorize: who makes it, where, and with what.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The tool called.
    pub tool: &'a str,
    /// Its arguments (an object).
    pub arguments: &'a Value,
    /// The tenant's resource URL.
    pub resource: &'a str,
    /// The caller's subject (`None` for a token without one).
    pub subject: Option<&'a str>,
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

/// The types metadata of the rules `declared` (the RAR remediation draft's "authorization
/// details types metadata"): for each type, a description for people and the JSON Schema of
/// one entry of it — the entry the gateway requires, per tool: its `locations`, the tool,
/// `tools/call`, the caller's `subject`, and the bound `arguments` (or `arguments_digest`).
pub fn types_metadata(declared: &[Declared]) -> Map<String, Value> {
    let mut by_type: std::collections::BTreeMap<&str, Vec<&Declared>> = Default::default();
    for d in declared {
        by_type.entry(d.rule.kind.as_str()).or_default().push(d);
    }
    by_type
        .into_iter()
        .map(|(kind, rules)| {
            let described: Vec<String> = rules
                .iter()
                .map(|d| {
                    let bound = if d.rule.bind.is_empty() {
                        "all its arguments".to_string()
                    } else {
                        d.rule.bind.join(", ")
                    };
                    format!(
                        "{} (`{}`: binds {bound}; {}; usable for {} s)",
                        d.title.as_deref().unwrap_or(&d.tool),
                        d.tool,
                        if d.rule.single_use { "one call" } else { "reusable" },
                        d.rule.max_age_secs
                    )
                })
                .collect();
            let per_tool: Vec<Value> = rules
                .iter()
                .map(|d| {
                    if d.rule.bind.is_empty() {
                        json!({"properties": {"tool": {"const": d.tool}}, "required": ["arguments_digest"]})
                    } else {
                        json!({"properties": {"tool": {"const": d.tool},
                            "arguments": {"type": "object", "required": d.rule.bind}},
                            "required": ["arguments"]})
                    }
                })
                .collect();
            let schema = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["type", "locations", "tool"],
                "properties": {
                    "type": {"const": kind},
                    "locations": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "uri"}},
                    "actions": {"type": "array", "contains": {"const": "tools/call"}},
                    "tool": {"type": "string"},
                    "subject": {"type": "string"},
                    "arguments": {"type": "object"},
                    "arguments_digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                },
                "anyOf": per_tool,
            });
            let description = format!(
                "A person's approval of one exact call of a tool: {}. The entry names the \
                 gateway's resource in `locations`, the tool, the caller's `subject`, and the \
                 approved argument values (or the digest of all arguments).",
                described.join("; ")
            );
            (
                kind.to_string(),
                json!({"description": description, "schema": schema}),
            )
        })
        .collect()
}

/// The stable `authorization_reference` of `details` (the RAR remediation draft): the
/// base64url of the first 16 bytes of the SHA-256 of their canonical JSON — the same for the
/// same details whatever their members' order, and revealing nothing of them.
pub fn reference(details: &Value) -> String {
    use base64::Engine as _;
    let digest = Sha256::digest(canonical(details));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

impl ApprovalRule {
    /// What is wrong with this rule for a tool whose arguments `input_schema` describes, if
    /// anything: a type outside `[A-Za-z0-9_.:/-]{1,128}`, a bound argument named twice, not
    /// at all, or not among the schema's `properties`, too many of them, or an age outside
    /// 1 s to a day.
    pub fn check(&self, input_schema: &Value) -> Result<(), String> {
        let type_ok = (1..=128).contains(&self.kind.len())
            && self
                .kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b));
        if !type_ok {
            return Err(format!(
                "approval type `{}` must match [A-Za-z0-9_.:/-]{{1,128}}",
                self.kind.escape_debug()
            ));
        }
        if self.bind.len() > MAX_BOUND {
            return Err(format!("an approval binds at most {MAX_BOUND} arguments"));
        }
        for (i, name) in self.bind.iter().enumerate() {
            if name.is_empty() || name.len() > 128 {
                return Err("a bound argument's name must be 1 to 128 bytes".into());
            }
            if self.bind[..i].contains(name) {
                return Err(format!("the approval binds `{name}` twice"));
            }
            if input_schema["properties"].get(name).is_none() {
                return Err(format!(
                    "the approval binds `{name}`, which the tool's inputSchema does not name"
                ));
            }
        }
        if !(1..=MAX_AGE_LIMIT_SECS).contains(&self.max_age_secs) {
            return Err(format!(
                "an approval's max age must be 1 to {MAX_AGE_LIMIT_SECS} seconds"
            ));
        }
        Ok(())
    }

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

    /// The `authorization_details` that would authorize exactly `call`: one entry of this
    /// rule's type naming the resource, the tool, the caller's subject and the bound values.
    pub fn details_for(&self, call: Call<'_>) -> Value {
        let (field, bound) = self.bound(call.arguments);
        let mut entry = json!({
            "type": self.kind,
            "locations": [call.resource],
            "actions": ["tools/call"],
            "tool": call.tool,
        });
        if let Some(subject) = call.subject {
            entry["subject"] = json!(subject);
        }
        entry[field] = bound;
        json!([entry])
    }

    /// The entry of `granted` (a token's `authorization_details`) that authorizes `call`, if
    /// any: this rule's type, the call's resource among its `locations`, the same tool, the
    /// same subject (an entry for a token without one names none), and the same bound values
    /// (or digest). Nothing else in the entry matters, and nothing a refusal said: only the
    /// call at hand.
    pub fn matching<'g>(&self, granted: &'g Value, call: Call<'_>) -> Option<&'g Value> {
        let (field, bound) = self.bound(call.arguments);
        let subject = call.subject.map_or(Value::Null, |s| json!(s));
        granted.as_array()?.iter().find(|entry| {
            entry["type"] == self.kind.as_str()
                && entry["locations"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x == call.resource))
                && entry["tool"] == call.tool
                && entry["subject"] == subject
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

    fn call<'a>(tool: &'a str, arguments: &'a Value, resource: &'a str) -> Call<'a> {
        Call {
            tool,
            arguments,
            resource,
            subject: Some("alice"),
        }
    }

    #[test]
    fn the_remediation_authorizes_exactly_the_call_and_nothing_near_it() {
        let rule = refund();
        let args = json!({"amount": "120.00", "currency": "EUR", "account": "DE02", "memo": "x"});
        let details = rule.details_for(call("payments.refund", &args, RESOURCE));
        assert_eq!(
            details,
            json!([{"type": "payment_refund", "locations": [RESOURCE], "actions": ["tools/call"],
                    "tool": "payments.refund", "subject": "alice",
                    "arguments": {"amount": "120.00", "currency": "EUR", "account": "DE02"}}])
        );
        assert!(
            rule.matching(&details, call("payments.refund", &args, RESOURCE))
                .is_some()
        );
        // An unbound argument may change; a bound one may not.
        let memo = json!({"amount": "120.00", "currency": "EUR", "account": "DE02", "memo": "y"});
        assert!(
            rule.matching(&details, call("payments.refund", &memo, RESOURCE))
                .is_some()
        );
        let other_tenant = "https://gw.example/t/other/mcp";
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
            ("payments.payout", args.clone(), RESOURCE),
            ("payments.refund", args.clone(), other_tenant),
        ] {
            assert!(
                rule.matching(&details, call(tool, &args, resource))
                    .is_none(),
                "{tool} {args} {resource}"
            );
        }
        // Another subject, or a token without one.
        for subject in [Some("bob"), None] {
            let by = Call {
                subject,
                ..call("payments.refund", &args, RESOURCE)
            };
            assert!(rule.matching(&details, by).is_none(), "{subject:?}");
        }
        let mut other_type = details.clone();
        other_type[0]["type"] = json!("payment_initiation");
        let mut other_action = details.clone();
        other_action[0]["actions"] = json!(["tools/list"]);
        for granted in [other_type, other_action, json!({"not": "a list"})] {
            assert!(
                rule.matching(&granted, call("payments.refund", &args, RESOURCE))
                    .is_none(),
                "{granted}"
            );
        }
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
        let details = rule.details_for(call("t", &a, RESOURCE));
        assert!(rule.matching(&details, call("t", &b, RESOURCE)).is_some());
        let fewer = json!({"a": "s", "b": [1]});
        assert!(
            rule.matching(&details, call("t", &fewer, RESOURCE))
                .is_none()
        );
    }

    #[test]
    fn the_types_metadata_describes_each_type_and_its_entries() {
        let declared = [
            Declared {
                tool: "payments.refund".into(),
                title: Some("Refund a payment".into()),
                rule: refund(),
            },
            Declared {
                tool: "payments.payout".into(),
                title: None,
                rule: ApprovalRule {
                    kind: "payment_initiation".into(),
                    bind: vec![],
                    single_use: false,
                    max_age_secs: 600,
                },
            },
        ];
        let meta = types_metadata(&declared);
        assert_eq!(
            meta.keys().collect::<Vec<_>>(),
            ["payment_initiation", "payment_refund"]
        );
        let refund = &meta["payment_refund"];
        assert!(
            refund["description"]
                .as_str()
                .unwrap()
                .contains("Refund a payment (`payments.refund`: binds amount, currency, account; one call; usable for 300 s)"),
            "{refund}"
        );
        assert_eq!(
            refund["schema"]["properties"]["type"]["const"],
            "payment_refund"
        );
        assert_eq!(
            refund["schema"]["anyOf"][0]["properties"]["arguments"]["required"],
            json!(["amount", "currency", "account"])
        );
        assert_eq!(
            meta["payment_initiation"]["schema"]["anyOf"][0]["required"],
            json!(["arguments_digest"])
        );
    }

    #[test]
    fn a_reference_names_the_details_whatever_their_order() {
        let a = json!([{"type": "t", "arguments": {"x": 1, "y": 2}}]);
        let b: Value = serde_json::from_str(r#"[{"arguments":{"y":2,"x":1},"type":"t"}]"#).unwrap();
        assert_eq!(reference(&a), reference(&b));
        assert_eq!(reference(&a).len(), 22);
        assert_ne!(
            reference(&a),
            reference(&json!([{"type": "t", "arguments": {"x": 1}}]))
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

    #[test]
    fn malformed_rules_are_named() {
        let schema = json!({"type": "object", "properties": {"amount": {}, "currency": {},
            "account": {}, "a": {}}});
        assert_eq!(refund().check(&schema), Ok(()));
        let cases = [
            (
                ApprovalRule {
                    kind: String::new(),
                    ..refund()
                },
                "must match",
            ),
            (
                ApprovalRule {
                    kind: "a b".into(),
                    ..refund()
                },
                "must match",
            ),
            (
                ApprovalRule {
                    kind: "x".repeat(129),
                    ..refund()
                },
                "must match",
            ),
            (
                ApprovalRule {
                    bind: vec!["a".into(), "a".into()],
                    ..refund()
                },
                "binds `a` twice",
            ),
            (
                ApprovalRule {
                    bind: vec![String::new()],
                    ..refund()
                },
                "1 to 128 bytes",
            ),
            (
                ApprovalRule {
                    bind: (0..33).map(|i| i.to_string()).collect(),
                    ..refund()
                },
                "at most 32",
            ),
            (
                ApprovalRule {
                    max_age_secs: 0,
                    ..refund()
                },
                "max age",
            ),
            (
                ApprovalRule {
                    max_age_secs: 86_401,
                    ..refund()
                },
                "max age",
            ),
            (
                ApprovalRule {
                    bind: vec!["amount".into(), "iban".into()],
                    ..refund()
                },
                "binds `iban`, which the tool's inputSchema does not name",
            ),
        ];
        for (rule, problem) in cases {
            let e = rule.check(&schema).unwrap_err();
            assert!(e.contains(problem), "{rule:?}: {e}");
        }
    }
}
