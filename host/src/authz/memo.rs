//! Remembered policy decisions (#33). A decision is a function of the policies, the entities
//! of the caller and the item, and the request's context — nothing else — so once made it
//! holds for the same inputs.
//!
//! Owns: what a policy set reads of `context.now` ([`NowUse`], from the policies' JSON form:
//! only the fields it reads go into a key, so a business-hours rule is decided once an hour,
//! not once a second), the key of one context ([`context_key`]: SHA-256 over every context
//! input a policy can read), and the bounded memo ([`Memo`]) each (caller, item) entry keeps.
//! Must not: decide (`policy` does), or be keyed by anything that could match another
//! caller's or item's entry — a memo lives inside the entry of one exact (caller, item), and
//! is keyed by the policy set's generation.

use std::collections::HashMap;

use cedar_policy::PolicySet;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The decisions one (caller, item) keeps at most (then it starts over).
const REMEMBERED: usize = 64;

/// Which fields of `context.now` a policy set reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NowUse {
    unix: bool,
    hour: bool,
    minute: bool,
    weekday: bool,
}

impl NowUse {
    const ALL: Self = Self {
        unix: true,
        hour: true,
        minute: true,
        weekday: true,
    };

    /// What `set` reads of `context.now`: each field a policy names; every field when one
    /// reads `now` (or the context) whole, or cannot be read back as JSON.
    pub(super) fn of(set: &PolicySet) -> Self {
        let mut uses = Self::default();
        for policy in set.policies() {
            match policy.to_json() {
                Ok(json) => walk(&json, &mut uses),
                Err(_) => return Self::ALL,
            }
        }
        uses
    }
}

/// Note in `uses` what the policy JSON `v` reads of `context.now`.
fn walk(v: &Value, uses: &mut NowUse) {
    match v {
        Value::Object(node) => {
            if let Some(access) = attribute_access(node) {
                let (of, attr) = access;
                if is_context(of) {
                    // `context.<x>` or `context has <x>`: any field but `now` is in the key
                    // whole; `now` itself is looked at by the access around this one.
                    if attr == "now" && !node.contains_key("has") {
                        *uses = NowUse::ALL;
                    }
                    return;
                }
                if is_context_now(of) {
                    match attr {
                        "unix" => uses.unix = true,
                        "hour" => uses.hour = true,
                        "minute" => uses.minute = true,
                        "weekday" => uses.weekday = true,
                        _ => *uses = NowUse::ALL,
                    }
                    return;
                }
            }
            if is_context(v) {
                // The context read whole.
                *uses = NowUse::ALL;
                return;
            }
            for child in node.values() {
                walk(child, uses);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, uses);
            }
        }
        _ => {}
    }
}

/// `{".": {"left": L, "attr": A}}` or `{"has": {"left": L, "attr": A}}`: (L, A).
fn attribute_access(node: &serde_json::Map<String, Value>) -> Option<(&Value, &str)> {
    if node.len() != 1 {
        return None;
    }
    let inner = node.get(".").or_else(|| node.get("has"))?;
    Some((inner.get("left")?, inner.get("attr")?.as_str()?))
}

fn is_context(v: &Value) -> bool {
    v.get("Var").and_then(Value::as_str) == Some("context")
}

fn is_context_now(v: &Value) -> bool {
    v.get(".").is_some_and(|a| {
        a.get("attr") == Some(&json!("now")) && a.get("left").is_some_and(is_context)
    })
}

/// The time a decision is made at, in the fields policies see.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    pub(super) unix: i64,
    pub(super) hour: i64,
    pub(super) minute: i64,
    /// Monday = 0.
    pub(super) weekday: i64,
}

impl Now {
    /// The time now (UTC).
    pub(super) fn current() -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let day_secs = unix % 86_400;
        Self {
            unix: unix as i64,
            hour: (day_secs / 3600) as i64,
            minute: (day_secs % 3600 / 60) as i64,
            // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
            weekday: ((unix / 86_400 + 3) % 7) as i64,
        }
    }
}

/// Every context input of one decision a policy can read, as a key: whether it is a listing,
/// the approval's type, the client's address, the arguments (whole), and the fields of the
/// time the policies read.
pub(super) struct ContextInputs<'a> {
    pub(super) listing: bool,
    pub(super) approval: Option<&'a str>,
    pub(super) address: Option<std::net::IpAddr>,
    pub(super) arguments: Option<&'a Value>,
    pub(super) now: Now,
}

/// The key of `inputs` under `uses` (SHA-256 of their JSON form).
pub(super) fn context_key(inputs: &ContextInputs<'_>, uses: NowUse) -> [u8; 32] {
    let field = |used: bool, value: i64| used.then_some(value);
    let now = &inputs.now;
    let text = json!([
        inputs.listing,
        inputs.approval,
        inputs.address.map(|a| a.to_string()),
        inputs.arguments,
        [
            field(uses.unix, now.unix),
            field(uses.hour, now.hour),
            field(uses.minute, now.minute),
            field(uses.weekday, now.weekday)
        ],
    ])
    .to_string();
    Sha256::digest(text.as_bytes()).into()
}

/// The decisions `D` made for one (caller, item), by policy-set generation and context key.
pub(super) struct Memo<D>(Mutex<HashMap<(u64, [u8; 32]), D>>);

impl<D> Default for Memo<D> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<D: Clone> Memo<D> {
    /// The decision made for this context under policy set `generation`, if one was.
    pub(super) fn get(&self, generation: u64, key: &[u8; 32]) -> Option<D> {
        self.0.lock().get(&(generation, *key)).cloned()
    }

    /// Remember `decision`.
    pub(super) fn put(&self, generation: u64, key: [u8; 32], decision: D) {
        let mut m = self.0.lock();
        if m.len() >= REMEMBERED {
            m.clear();
        }
        m.insert((generation, key), decision);
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    fn uses(text: &str) -> NowUse {
        NowUse::of(&PolicySet::from_str(text).unwrap())
    }

    #[test]
    fn only_the_fields_of_now_a_policy_reads_are_in_the_key() {
        assert_eq!(
            uses("permit (principal, action, resource);"),
            NowUse::default()
        );
        assert_eq!(
            uses(
                r#"permit (principal, action, resource) when { context.now.hour >= 8 && context["now"]["weekday"] < 5 && context has now };"#
            ),
            NowUse {
                hour: true,
                weekday: true,
                ..NowUse::default()
            }
        );
        assert_eq!(
            uses(
                r#"permit (principal, action, resource) when { context has arguments && context.arguments.amount.lessThan(decimal("5.0")) };"#
            ),
            NowUse::default()
        );
        assert_eq!(
            uses(r#"permit (principal, action, resource) when { context.now has unix };"#),
            NowUse {
                unix: true,
                ..NowUse::default()
            }
        );
    }

    #[test]
    fn reading_now_or_the_context_whole_puts_every_field_in_the_key() {
        for text in [
            r#"permit (principal, action, resource) when { context.now == {"unix": 1, "hour": 0, "minute": 0, "weekday": 3} };"#,
            r#"permit (principal, action, resource) when { context.now.hour > 1 && context.now == context.now };"#,
            r#"permit (principal, action, resource) when { context == {"listing": true} };"#,
            r#"permit (principal, action, resource) when { {"a": context}.a.listing };"#,
        ] {
            assert_eq!(uses(text), NowUse::ALL, "{text}");
        }
    }

    #[test]
    fn keys_differ_in_every_input_a_policy_reads_and_only_those() {
        let now = Now {
            unix: 1_000_000,
            hour: 13,
            minute: 46,
            weekday: 0,
        };
        let amount = json!({"amount": 120.5});
        let base = ContextInputs {
            listing: false,
            approval: None,
            address: None,
            arguments: Some(&amount),
            now,
        };
        let hour_only = NowUse {
            hour: true,
            ..NowUse::default()
        };
        let key = |i: &ContextInputs<'_>| context_key(i, hour_only);
        let other_amount = json!({"amount": 120.6});
        let later_same_hour = Now {
            unix: 1_000_030,
            minute: 47,
            ..now
        };
        assert_eq!(
            key(&base),
            key(&ContextInputs {
                now: later_same_hour,
                ..base
            }),
            "a minute later, in the same hour, for a policy that reads the hour"
        );
        for changed in [
            ContextInputs {
                listing: true,
                ..base
            },
            ContextInputs {
                approval: Some("payment_refund"),
                ..base
            },
            ContextInputs {
                address: Some("10.0.0.1".parse().unwrap()),
                ..base
            },
            ContextInputs {
                arguments: Some(&other_amount),
                ..base
            },
            ContextInputs {
                arguments: None,
                ..base
            },
            ContextInputs {
                now: Now { hour: 14, ..now },
                ..base
            },
        ] {
            assert_ne!(key(&base), key(&changed));
        }
    }
}
