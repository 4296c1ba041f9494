//! The Cedar schema a tenant's policies are checked against, generated from its catalog
//! (#33), and the types of tool arguments as policies see them.
//!
//! Owns: the schema ([`schema_json`]: the caller, the items, one action per tool — a member
//! of `tools/call` — with the context every action shares and the tool's arguments typed from
//! its `inputSchema`), and each argument type ([`Ty`]: which JSON Schema types policies can
//! see, and a JSON value as Cedar's). Must not: read policies, evaluate them, or see a token.

use std::collections::{HashMap, HashSet};

use cedar_policy::RestrictedExpression;
use serde_json::{Value, json};

use crate::plugins::Catalog;

/// The namespace of every type and action the policies see.
pub const NAMESPACE: &str = "Portcullis";
/// How deep an argument's type is followed into nested objects.
const MAX_ARGUMENT_DEPTH: usize = 4;

/// The Cedar type of a value the policies see, from a JSON Schema.
#[derive(Debug, Clone)]
pub(super) enum Ty {
    String,
    Long,
    Decimal,
    Bool,
    Set(Box<Ty>),
    Record(Vec<(String, Ty, bool)>),
}

impl Ty {
    /// The Cedar type of what `schema` (JSON Schema) describes, if policies can see it:
    /// strings and enums of them, integers, numbers (as `decimal`), booleans, arrays of those
    /// (as sets), and objects with `properties` (records, four deep). Anything else is left
    /// out, so no policy can name it.
    pub(super) fn of(schema: &Value, depth: usize) -> Option<Ty> {
        if depth > MAX_ARGUMENT_DEPTH {
            return None;
        }
        let kind = match &schema["type"] {
            Value::String(t) => Some(t.as_str()),
            Value::Array(ts) => {
                let named: Vec<&str> = ts
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null")
                    .collect();
                (named.len() == 1).then(|| named[0])
            }
            _ if schema["enum"]
                .as_array()
                .is_some_and(|e| e.iter().all(Value::is_string)) =>
            {
                Some("string")
            }
            _ => None,
        };
        match kind? {
            "string" => Some(Ty::String),
            "integer" => Some(Ty::Long),
            "number" => Some(Ty::Decimal),
            "boolean" => Some(Ty::Bool),
            "array" => Ty::of(&schema["items"], depth + 1).map(|t| Ty::Set(Box::new(t))),
            "object" => Some(Ty::record(schema, depth)),
            _ => None,
        }
    }

    /// The record of an object schema's `properties` (those policies can see).
    pub(super) fn record(schema: &Value, depth: usize) -> Ty {
        let required: HashSet<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let attributes = schema["properties"]
            .as_object()
            .map(|props| {
                props
                    .iter()
                    .filter_map(|(name, s)| {
                        Ty::of(s, depth + 1)
                            .map(|t| (name.clone(), t, required.contains(name.as_str())))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ty::Record(attributes)
    }

    /// Cedar's JSON schema of this type.
    pub(super) fn schema(&self) -> Value {
        match self {
            Ty::String => json!({"type": "String"}),
            Ty::Long => json!({"type": "Long"}),
            Ty::Decimal => json!({"type": "Extension", "name": "decimal"}),
            Ty::Bool => json!({"type": "Boolean"}),
            Ty::Set(t) => json!({"type": "Set", "element": t.schema()}),
            Ty::Record(attrs) => {
                let attributes: serde_json::Map<String, Value> = attrs
                    .iter()
                    .map(|(name, t, required)| {
                        let mut s = t.schema();
                        if !required {
                            s["required"] = json!(false);
                        }
                        (name.clone(), s)
                    })
                    .collect();
                json!({"type": "Record", "attributes": attributes})
            }
        }
    }

    /// `value` as this type (the arguments passed the tool's schema check, so a mismatch is
    /// a value Cedar cannot hold: a number too large or too precise, which refuses the call).
    pub(super) fn value(&self, value: &Value) -> Result<RestrictedExpression, String> {
        let wrong = || format!("the value {value} cannot be put to the policies");
        Ok(match self {
            Ty::String => {
                RestrictedExpression::new_string(value.as_str().ok_or_else(wrong)?.into())
            }
            Ty::Long => RestrictedExpression::new_long(value.as_i64().ok_or_else(wrong)?),
            Ty::Decimal => RestrictedExpression::new_decimal(decimal(value).ok_or_else(wrong)?),
            Ty::Bool => RestrictedExpression::new_bool(value.as_bool().ok_or_else(wrong)?),
            Ty::Set(t) => RestrictedExpression::new_set(
                value
                    .as_array()
                    .ok_or_else(wrong)?
                    .iter()
                    .map(|v| t.value(v))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Ty::Record(attrs) => {
                let object = value.as_object().ok_or_else(wrong)?;
                let mut pairs = Vec::new();
                for (name, t, _) in attrs {
                    if let Some(v) = object.get(name).filter(|v| !v.is_null()) {
                        pairs.push((name.clone(), t.value(v)?));
                    }
                }
                RestrictedExpression::new_record(pairs).map_err(|e| e.to_string())?
            }
        })
    }
}

/// A JSON number as Cedar's `decimal` (four places; within its range), if it is one.
fn decimal(value: &Value) -> Option<String> {
    let n = value.as_f64()?;
    // Cedar's decimal is an i64 of ten-thousandths.
    if !n.is_finite() || n.abs() >= 922_337_203_685_477.0 {
        return None;
    }
    let text = format!("{n:.4}");
    Some(text)
}

/// The record type of the context every action shares, plus `arguments` when given.
fn context_schema(arguments: Option<&Ty>) -> Value {
    let mut attributes = json!({
        "now": {"type": "Record", "attributes": {
            "unix": {"type": "Long"}, "hour": {"type": "Long"}, "minute": {"type": "Long"},
            "weekday": {"type": "Long"}}},
        "listing": {"type": "Boolean"},
        "approval": {"type": "String", "required": false},
        "client_address": {"type": "Extension", "name": "ipaddr", "required": false},
    });
    if let Some(args) = arguments {
        let mut s = args.schema();
        s["required"] = json!(false);
        attributes["arguments"] = s;
    }
    json!({"type": "Record", "attributes": attributes})
}

/// The Cedar schema (JSON form) the policies of a tenant with `catalog` and the token claims
/// `claims` are checked against: what `portcullis policy schema` prints.
pub fn schema_json(catalog: &Catalog, claims: &[String]) -> Value {
    schema_and_arguments(catalog, claims).0
}

pub(super) fn schema_and_arguments(
    catalog: &Catalog,
    claims: &[String],
) -> (Value, HashMap<String, Ty>) {
    let set_of_strings = json!({"type": "Set", "element": {"type": "String"}});
    let optional_set = json!({"type": "Set", "element": {"type": "String"}, "required": false});
    let claim_attributes: serde_json::Map<String, Value> = claims
        .iter()
        .map(|c| (c.clone(), optional_set.clone()))
        .collect();
    let optional_string = json!({"type": "String", "required": false});
    let item = |extra: Value| {
        let mut attributes = json!({"plugin": {"type": "String"}, "scopes": set_of_strings});
        for (k, v) in extra.as_object().into_iter().flatten() {
            attributes[k] = v.clone();
        }
        json!({"shape": {"type": "Record", "attributes": attributes}})
    };
    let entity_types = json!({
        "Caller": {"shape": {"type": "Record", "attributes": {
            "issuer": {"type": "String"},
            "subject": optional_string,
            "client_id": optional_string,
            "scopes": set_of_strings,
            "credential": {"type": "String"},
            "claims": {"type": "Record", "attributes": claim_attributes},
        }}},
        "Tool": item(json!({"read_only": {"type": "Boolean"}, "destructive": {"type": "Boolean"},
            "approval_type": optional_string})),
        "Prompt": item(json!({})),
        "Resource": item(json!({})),
    });
    let applies = |resource: &str, context: Value| json!({"appliesTo": {"principalTypes": ["Caller"], "resourceTypes": [resource], "context": context}});
    let mut actions = serde_json::Map::new();
    actions.insert("tools/call".into(), json!({}));
    actions.insert(
        "prompts/get".into(),
        applies("Prompt", context_schema(None)),
    );
    actions.insert(
        "resources/read".into(),
        applies("Resource", context_schema(None)),
    );
    let mut arguments = HashMap::new();
    for (_, tool) in catalog.tools() {
        let schema: Value = serde_json::from_str(&tool.input_schema).unwrap_or_default();
        let ty = Ty::record(&schema, 0);
        let mut action = applies("Tool", context_schema(Some(&ty)));
        action["memberOf"] = json!([{"id": "tools/call"}]);
        actions.insert(tool.name.clone(), action);
        arguments.insert(tool.name.clone(), ty);
    }
    let schema = json!({ NAMESPACE: {"entityTypes": entity_types, "actions": actions} });
    (schema, arguments)
}
