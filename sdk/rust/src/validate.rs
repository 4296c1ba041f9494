//! Check a value against a JSON Schema natively, as the gateway does before a plugin runs and
//! after it answers: what [`crate::testing::TestHost`] uses so a test fails where the gateway
//! would refuse. Covers the keywords schemars writes and the common hand-written ones (type,
//! enum, const, properties, required, additionalProperties, items, prefixItems, the bounds on
//! numbers, strings, arrays and objects, pattern, the common string formats,
//! anyOf/oneOf/allOf/not, `$ref` and `$defs` within the schema); a keyword or format it does not
//! know is ignored, as JSON Schema says.

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
        if let Some(format) = s.get("format").and_then(Value::as_str)
            && formats::known(format, text) == Some(false)
        {
            found.push(msg(at, format!("{text:?} is not a valid {format}")));
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

/// The string formats the gateway enforces that tests most often meet (RFC 3339 dates and
/// times, email, hostname, IP addresses, URI, UUID).
mod formats {
    use regex_lite::Regex;

    fn matches(pattern: &str, text: &str) -> bool {
        Regex::new(pattern).is_ok_and(|re| re.is_match(text))
    }

    fn date(v: &str) -> bool {
        if !matches(r"^\d{4}-\d{2}-\d{2}$", v) {
            return false;
        }
        let n = |r: std::ops::Range<usize>| v[r].parse::<u32>().unwrap_or(0);
        let (y, m, d) = (n(0..4), n(5..7), n(8..10));
        let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        let days = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (1..=days).contains(&d)
    }

    fn time(v: &str) -> bool {
        matches(
            r"^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$",
            v,
        )
    }

    fn hostname(v: &str) -> bool {
        !v.is_empty()
            && v.len() <= 253
            && v.strip_suffix('.')
                .unwrap_or(v)
                .split('.')
                .all(|label| matches(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", label))
    }

    /// Whether `text` is a valid `format`; `None` for a format not checked here.
    pub(super) fn known(format: &str, text: &str) -> Option<bool> {
        Some(match format {
            "date" => date(text),
            "time" => time(text),
            "date-time" => {
                text.len() > 11
                    && text.is_char_boundary(10)
                    && text.is_char_boundary(11)
                    && matches!(&text[10..11], "T" | "t")
                    && date(&text[..10])
                    && time(&text[11..])
            }
            "email" => matches(r"^[^@\s]+@[^@\s]+$", text),
            "hostname" => hostname(text),
            "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
            "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
            "uri" => matches(r"^[A-Za-z][A-Za-z0-9+.-]*:\S*$", text),
            "uuid" => matches(
                r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
                text,
            ),
            _ => return None,
        })
    }
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

    /// The table the gateway's own unit test decides the same way.
    #[test]
    fn common_formats_are_checked_as_the_gateway_does() {
        let table: Value = serde_json::from_str(include_str!("../../format-cases.json")).unwrap();
        for case in table["cases"].as_array().unwrap() {
            let (format, text, valid) = (&case[0], &case[1], case[2].as_bool().unwrap());
            let found = problems(&json!({"type": "string", "format": format}), text);
            assert_eq!(found.is_empty(), valid, "{format} {text}: {found:?}");
        }
        assert!(problems(&json!({"type": "string", "format": "unknown"}), &json!("x")).is_empty());
        assert_eq!(
            problems(
                &json!({"type": "object", "properties": {"at": {"type": "string", "format": "date"}}}),
                &json!({"at": "2026-13-01"})
            ),
            ["at `/at`: \"2026-13-01\" is not a valid date"]
        );
    }
}
