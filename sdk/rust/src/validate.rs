//! Check a value against a JSON Schema natively, as the gateway does before a plugin runs and
//! after it answers: what [`crate::testing::TestHost`] uses so a test fails where the gateway
//! would refuse. Covers the keywords schemars writes and the common hand-written ones (type,
//! enum, const, properties, required, additionalProperties, items, prefixItems, the bounds on
//! numbers, strings, arrays and objects, pattern, anyOf/oneOf/allOf/not, `$ref` and `$defs`
//! within the schema); a keyword it does not know is ignored, as JSON Schema says.

use serde_json::Value;

/// Each way `value` breaks `schema`, as ``at `/path`: what is wrong`` (empty when it fits).
pub(crate) fn problems(schema: &Value, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check(schema, value, "", schema, &mut found, 0);
    found
}

fn type_matches(kind: &str, v: &Value) -> bool {
    match kind {
        "string" => v.is_string(),
        "integer" => {
            v.as_i64().is_some()
                || v.as_u64().is_some()
                || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn show(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

fn check(
    schema: &Value,
    value: &Value,
    at: &str,
    root: &Value,
    found: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        found.push(format!("at `{}`: the schema nests too deeply", or_root(at)));
        return;
    }
    let Some(s) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            found.push(format!("at `{}`: no value is allowed here", or_root(at)));
        }
        return;
    };
    if let Some(reference) = s.get("$ref").and_then(Value::as_str) {
        match resolve(root, reference) {
            Some(target) => check(target, value, at, root, found, depth + 1),
            None => found.push(format!(
                "at `{}`: the schema's $ref {reference} points nowhere in it",
                or_root(at)
            )),
        }
    }
    if let Some(kinds) = s.get("type") {
        let kinds: Vec<&str> = match kinds {
            Value::String(k) => vec![k.as_str()],
            Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !kinds.is_empty() && !kinds.iter().any(|k| type_matches(k, value)) {
            found.push(msg(
                at,
                format!("{} is not of type {}", show(value), kinds.join(" or ")),
            ));
            return;
        }
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let listed: Vec<String> = options.iter().map(show).collect();
        found.push(msg(
            at,
            format!("must be one of {} (got {})", listed.join(", "), show(value)),
        ));
    }
    if let Some(constant) = s.get("const")
        && constant != value
    {
        found.push(msg(
            at,
            format!("must be {} (got {})", show(constant), show(value)),
        ));
    }
    if let Some(n) = value.as_f64() {
        let bound = |key: &str| s.get(key).and_then(Value::as_f64);
        if let Some(l) = bound("minimum").filter(|l| n < *l) {
            found.push(msg(
                at,
                format!("{} is less than the minimum of {l}", show(value)),
            ));
        }
        if let Some(l) = bound("maximum").filter(|l| n > *l) {
            found.push(msg(
                at,
                format!("{} is greater than the maximum of {l}", show(value)),
            ));
        }
        if let Some(l) = bound("exclusiveMinimum").filter(|l| n <= *l) {
            found.push(msg(at, format!("{} is not greater than {l}", show(value))));
        }
        if let Some(l) = bound("exclusiveMaximum").filter(|l| n >= *l) {
            found.push(msg(at, format!("{} is not less than {l}", show(value))));
        }
        if let Some(m) =
            bound("multipleOf").filter(|m| *m > 0.0 && ((n / m).round() - n / m).abs() > 1e-9)
        {
            found.push(msg(at, format!("{} is not a multiple of {m}", show(value))));
        }
    }
    if let Some(text) = value.as_str() {
        let len = text.chars().count() as u64;
        if let Some(l) = s
            .get("minLength")
            .and_then(Value::as_u64)
            .filter(|l| len < *l)
        {
            found.push(msg(at, format!("is shorter than {l} characters")));
        }
        if let Some(l) = s
            .get("maxLength")
            .and_then(Value::as_u64)
            .filter(|l| len > *l)
        {
            found.push(msg(at, format!("is longer than {l} characters")));
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            match regex_lite::Regex::new(pattern) {
                Ok(re) if !re.is_match(text) => {
                    found.push(msg(at, format!("does not match the pattern {pattern:?}")))
                }
                Ok(_) => {}
                Err(e) => found.push(msg(
                    at,
                    format!("the schema's pattern {pattern:?} is not a regular expression: {e}"),
                )),
            }
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as u64;
        if let Some(l) = s
            .get("minItems")
            .and_then(Value::as_u64)
            .filter(|l| len < *l)
        {
            found.push(msg(at, format!("has fewer than {l} items")));
        }
        if let Some(l) = s
            .get("maxItems")
            .and_then(Value::as_u64)
            .filter(|l| len > *l)
        {
            found.push(msg(at, format!("has more than {l} items")));
        }
        let prefix = s.get("prefixItems").and_then(Value::as_array);
        for (i, item) in items.iter().enumerate() {
            let sub = prefix.and_then(|p| p.get(i)).or_else(|| s.get("items"));
            if let Some(sub) = sub {
                check(sub, item, &format!("{at}/{i}"), root, found, depth + 1);
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = s.get("properties").and_then(Value::as_object);
        for name in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = name.as_str()
                && !object.contains_key(name)
            {
                found.push(format!(
                    "at `{}`: \"{name}\" is a required property",
                    or_root(at)
                ));
            }
        }
        let len = object.len() as u64;
        if let Some(l) = s
            .get("minProperties")
            .and_then(Value::as_u64)
            .filter(|l| len < *l)
        {
            found.push(format!(
                "at `{}`: has fewer than {l} properties",
                or_root(at)
            ));
        }
        if let Some(l) = s
            .get("maxProperties")
            .and_then(Value::as_u64)
            .filter(|l| len > *l)
        {
            found.push(format!(
                "at `{}`: has more than {l} properties",
                or_root(at)
            ));
        }
        let extra = s.get("additionalProperties");
        let mut unexpected = Vec::new();
        for (name, item) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(sub) => check(sub, item, &format!("{at}/{name}"), root, found, depth + 1),
                None => match extra {
                    Some(Value::Bool(false)) => unexpected.push(format!("'{name}'")),
                    Some(sub @ Value::Object(_)) => {
                        check(sub, item, &format!("{at}/{name}"), root, found, depth + 1);
                    }
                    _ => {}
                },
            }
        }
        if !unexpected.is_empty() {
            found.push(format!(
                "at `{}`: additional properties are not allowed ({})",
                or_root(at),
                unexpected.join(", ")
            ));
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = s.get(key).and_then(Value::as_array) {
            let passing = branches
                .iter()
                .filter(|b| {
                    let mut inner = Vec::new();
                    check(b, value, "", root, &mut inner, depth + 1);
                    inner.is_empty()
                })
                .count();
            if passing == 0 || (key == "oneOf" && passing > 1) {
                let constants: Vec<String> = branches
                    .iter()
                    .filter_map(|b| b.get("const").map(show))
                    .collect();
                if constants.len() == branches.len() {
                    found.push(format!(
                        "at `{}`: must be one of {} (got {})",
                        or_root(at),
                        constants.join(", "),
                        show(value)
                    ));
                } else {
                    found.push(format!(
                        "at `{}`: {} matches {} of the {} allowed forms ({key})",
                        or_root(at),
                        show(value),
                        if passing == 0 {
                            "none"
                        } else {
                            "more than one"
                        },
                        branches.len()
                    ));
                }
            }
        }
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check(sub, value, at, root, found, depth + 1);
    }
    if let Some(not) = s.get("not") {
        let mut inner = Vec::new();
        check(not, value, "", root, &mut inner, depth + 1);
        if inner.is_empty() {
            found.push(format!(
                "at `{}`: matches a schema it must not",
                or_root(at)
            ));
        }
    }
}

fn msg(at: &str, what: String) -> String {
    format!("at `{}`: {what}", or_root(at))
}

fn or_root(at: &str) -> &str {
    if at.is_empty() { "/" } else { at }
}

/// The subschema a local `$ref` (`#/$defs/Name`) points at.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_schemars_writes_is_checked() {
        let schema = json!({"type": "object", "properties": {
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            "priority": {"oneOf": [{"const": "low"}, {"const": "high"}]},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "maxItems": 2},
            "title": {"type": "string", "pattern": "^[a-z]+$"}},
            "required": ["limit"], "additionalProperties": false,
            "$defs": {"Tag": {"type": "string", "minLength": 2}}});
        assert!(
            problems(
                &schema,
                &json!({"limit": 5, "priority": "low", "tags": ["ab"]})
            )
            .is_empty()
        );
        let all = problems(
            &schema,
            &json!({"limit": 500, "priority": "urgent", "tags": ["a", "bb", "cc"], "title": "A", "x": 1}),
        );
        let text = all.join("\n");
        for needle in [
            "at `/limit`: 500 is greater than the maximum of 100",
            "at `/priority`: must be one of \"low\", \"high\" (got \"urgent\")",
            "at `/tags`: has more than 2 items",
            "at `/tags/0`: is shorter than 2 characters",
            "at `/title`: does not match the pattern",
            "additional properties are not allowed ('x')",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert_eq!(
            problems(&schema, &json!({}))[0],
            "at `/`: \"limit\" is a required property"
        );
    }
}
