//! Tool schemas as the host enforces them: each tool's `inputSchema` and `outputSchema`,
//! compiled once per plugin version (JSON Schema 2020-12 unless `$schema` names another
//! draft), so arguments that break a tool's schema never reach the plugin and structured
//! output that breaks it never reaches the client.
//!
//! Owns: compiling a tool's schemas (no remote or file references are ever fetched; `pattern`
//! uses a linear-time regex engine, so no caller input can make a check backtrack) and the
//! violation text (values masked, bounded in count and length). Must not: decide what a
//! violation answers (`mcp::tools` does) or log (its callers do, with their context).

use std::fmt;

use jsonschema::{PatternOptions, Validator};
use serde_json::Value;

use super::ValidationError;
use super::bounds;
use crate::sandbox::wit;

/// Most violations described in one answer.
const MAX_VIOLATIONS: usize = 5;
/// Longest description of one violation (characters).
const MAX_VIOLATION_CHARS: usize = 200;
/// Largest compiled `pattern` regex (bytes).
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// One tool's compiled schemas.
pub struct ToolSchemas {
    input: Validator,
    output: Option<Validator>,
    /// The input schema annotates properties as SEP-2243 `Mcp-Param-*` headers.
    param_headers: bool,
}

impl fmt::Debug for ToolSchemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolSchemas")
            .field("output", &self.output.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a value does not match a schema: up to [`MAX_VIOLATIONS`] descriptions, each with the
/// JSON pointer of the offending value and what is wrong, with values masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations {
    described: Vec<String>,
    more: usize,
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.described.join("; "))?;
        if self.more > 0 {
            write!(f, "; and {} more", self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

impl Violations {
    fn one(problem: &str) -> Self {
        Self {
            described: vec![problem.to_string()],
            more: 0,
        }
    }
}

impl ToolSchemas {
    /// Compile `tool`'s schemas, refusing ones that are not JSON, not objects, (input) not of
    /// `"type": "object"`, or not valid JSON Schema.
    pub fn compile(tool: &wit::Tool) -> Result<Self, ValidationError> {
        let input = compile(&tool.name, "input schema", &tool.input_schema, true)?;
        let output = match &tool.output_schema {
            Some(text) => Some(compile(&tool.name, "output schema", text, false)?),
            None => None,
        };
        Ok(Self {
            input,
            output,
            param_headers: tool.input_schema.contains("x-mcp-header"),
        })
    }

    /// Whether the input schema may name `Mcp-Param-*` headers (an `x-mcp-header` anywhere
    /// in it): calls of such a tool need their headers checked against the arguments.
    pub fn annotates_headers(&self) -> bool {
        self.param_headers
    }

    /// Check a call's arguments against `inputSchema`. The violations are for the client
    /// (and its model) to correct the call from: each names the field, what is allowed and,
    /// for a scalar, the value received (the client's own, clipped).
    pub fn check_arguments(&self, arguments: &Value) -> Result<(), Violations> {
        check(&self.input, arguments, Shown::Received)
    }

    /// Check a successful result's `structuredContent` against `outputSchema`: with an output
    /// schema, structured content is required.
    pub fn check_output(&self, structured: Option<&Value>) -> Result<(), Violations> {
        match (&self.output, structured) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(Violations::one(
                "no structuredContent, but the tool declares an outputSchema",
            )),
            (Some(schema), Some(value)) => check(schema, value, Shown::Masked),
        }
    }
}

fn compile(
    tool: &str,
    what: &'static str,
    text: &str,
    object_root: bool,
) -> Result<Validator, ValidationError> {
    let err = |problem: String| ValidationError::Schema {
        tool: tool.into(),
        what,
        problem,
    };
    if text.len() > bounds::MAX_SCHEMA_BYTES {
        // Refused before it is parsed at all.
        return Err(err(
            bounds::OutOfBounds::TooLarge { bytes: text.len() }.to_string()
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
    bounds::check(text, &value).map_err(|e| err(e.to_string()))?;
    let Some(obj) = value.as_object() else {
        return Err(err("must be a JSON object".into()));
    };
    if object_root && obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err(err("the root must have \"type\": \"object\"".into()));
    }
    jsonschema::options()
        // `format` is enforced under every draft (2020-12 makes it an annotation by default).
        .should_validate_formats(true)
        .with_pattern_options(PatternOptions::regex().size_limit(MAX_PATTERN_BYTES))
        .build(&value)
        .map_err(|e| {
            err(format!(
                "not a usable JSON Schema: {}",
                clip(&e.masked().to_string())
            ))
        })
}

/// Whether a violation shows the value it is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// A client's own arguments: scalars are shown back to it (clipped).
    Received,
    /// A plugin's output (it goes to the log): never.
    Masked,
}

/// Longest received value shown in a violation (characters).
const MAX_SHOWN_VALUE_CHARS: usize = 60;

fn check(schema: &Validator, value: &Value, shown: Shown) -> Result<(), Violations> {
    let mut described = Vec::new();
    let mut more = 0;
    for error in schema.iter_errors(value) {
        if described.len() == MAX_VIOLATIONS {
            more += 1;
            continue;
        }
        let at = error.instance_path().to_string();
        let at = if at.is_empty() { "/".to_string() } else { at };
        described.push(clip(&format!("at `{at}`: {}", describe(&error, shown))));
    }
    if described.is_empty() {
        Ok(())
    } else {
        Err(Violations { described, more })
    }
}

/// What is wrong, in words a model can correct the call from: a `oneOf`/`anyOf` whose
/// branches are each one constant (what generators make of documented enum variants) reads
/// as the list of allowed values; other `oneOf`/`anyOf` failures name each branch's first
/// problem.
fn describe(error: &jsonschema::ValidationError<'_>, shown: Shown) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    let received = match (shown, error.instance().as_ref()) {
        (Shown::Received, v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
            let v = v.to_string();
            match v.char_indices().nth(MAX_SHOWN_VALUE_CHARS) {
                Some((end, _)) => format!(" (got {}…)", &v[..end]),
                None => format!(" (got {v})"),
            }
        }
        (Shown::Received, Value::Null) => " (got null)".into(),
        _ => String::new(),
    };
    let branches = match error.kind() {
        Kind::OneOfNotValid { context } | Kind::AnyOf { context } => context,
        Kind::Enum { options } => {
            return format!("must be one of {}{received}", listed(options.as_array()));
        }
        Kind::Constant { expected_value } => {
            return format!("must be {expected_value}{received}");
        }
        _ => return format!("{}{received}", error.masked()),
    };
    // Each branch's allowed values, if every branch is only a constant or an enum.
    let constants: Option<Vec<Value>> = branches
        .iter()
        .map(|errors| match errors.as_slice() {
            [only] => match only.kind() {
                Kind::Constant { expected_value } => Some(vec![(**expected_value).clone()]),
                Kind::Enum { options } => options.as_array().cloned(),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(|v| v.concat());
    if let Some(values) = constants {
        return format!("must be one of {}{received}", listed(Some(&values)));
    }
    let each: Vec<String> = branches
        .iter()
        .take(3)
        .filter_map(|errors| errors.first())
        .map(|e| describe(e, Shown::Masked))
        .collect();
    let more = if branches.len() > 3 { "; …" } else { "" };
    format!(
        "matches none of the {} allowed forms ({}{more}){received}",
        branches.len(),
        each.join("; ")
    )
}

/// `values` as `"a", "b", 3` (at most 20, then how many more).
fn listed(values: Option<&Vec<Value>>) -> String {
    let values = values.map(Vec::as_slice).unwrap_or_default();
    let mut text: Vec<String> = values.iter().take(20).map(Value::to_string).collect();
    if values.len() > 20 {
        text.push(format!("and {} more", values.len() - 20));
    }
    text.join(", ")
}

/// `text` cut to [`MAX_VIOLATION_CHARS`] characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_VIOLATION_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(input: Value, output: Option<Value>) -> wit::Tool {
        wit::Tool {
            name: "t".into(),
            title: None,
            description: String::new(),
            input_schema: input.to_string(),
            output_schema: output.map(|o| o.to_string()),
            annotations: None,
            required_scopes: vec![],
        }
    }

    fn schemas() -> ToolSchemas {
        ToolSchemas::compile(&tool(
            json!({
                "type": "object",
                "properties": {"text": {"type": "string", "pattern": "^(a+)+$"}},
                "required": ["text"],
                "additionalProperties": false
            }),
            Some(
                json!({"type": "object", "properties": {"words": {"type": "integer"}},
                        "required": ["words"]}),
            ),
        ))
        .unwrap()
    }

    #[test]
    fn arguments_are_checked_and_only_scalars_shown_back() {
        let s = schemas();
        assert!(s.check_arguments(&json!({"text": "aaa"})).is_ok());
        let missing = s.check_arguments(&json!({})).unwrap_err().to_string();
        assert!(
            missing.contains("\"text\" is a required property"),
            "{missing}"
        );
        let wrong = s
            .check_arguments(&json!({"text": 42}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            wrong,
            "at `/text`: value is not of type \"string\" (got 42)"
        );
        let extra = s
            .check_arguments(&json!({"text": "a", "secret": "hunter2"}))
            .unwrap_err()
            .to_string();
        assert!(
            extra.contains("secret") && !extra.contains("hunter2"),
            "{extra}"
        );
    }

    /// #30: a Rust enum with documented variants becomes `oneOf` of `const`s (schemars);
    /// before, a wrong value read "value is not valid under any of the schemas listed in the
    /// 'oneOf' keyword" — nothing a model can correct from.
    #[test]
    fn a_one_of_of_constants_reads_as_the_allowed_values() {
        let s = ToolSchemas::compile(&tool(
            json!({"type": "object", "properties": {
                "priority": {"oneOf": [
                    {"description": "Whenever.", "type": "string", "const": "low"},
                    {"description": "Today.", "type": "string", "const": "high"}]},
                "size": {"anyOf": [{"enum": ["s", "m"]}, {"const": "l"}]},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                "when": {"oneOf": [{"type": "string", "format": "date"}, {"type": "integer"}]}}}),
            None,
        ))
        .unwrap();
        let refused = |args: Value| s.check_arguments(&args).unwrap_err().to_string();
        assert_eq!(
            refused(json!({"priority": "urgent"})),
            "at `/priority`: must be one of \"low\", \"high\" (got \"urgent\")"
        );
        assert_eq!(
            refused(json!({"size": "xl"})),
            "at `/size`: must be one of \"s\", \"m\", \"l\" (got \"xl\")"
        );
        assert_eq!(
            refused(json!({"limit": 500})),
            "at `/limit`: value is greater than the maximum of 100 (got 500)"
        );
        let when = refused(json!({"when": true}));
        assert!(
            when.starts_with("at `/when`: matches none of the 2 allowed forms (")
                && when.contains("\"string\"")
                && when.contains("\"integer\"")
                && when.ends_with("(got true)"),
            "{when}"
        );
        // A long value is clipped; a plugin's output is never shown.
        let long = refused(json!({"priority": "x".repeat(500)}));
        assert!(long.len() < 150, "{long}");
        let out = ToolSchemas::compile(&tool(
            json!({"type": "object"}),
            Some(json!({"type": "object", "properties": {"n": {"type": "integer"}}})),
        ))
        .unwrap();
        let masked = out
            .check_output(Some(&json!({"n": "secret-value"})))
            .unwrap_err()
            .to_string();
        assert!(!masked.contains("secret-value"), "{masked}");
    }

    #[test]
    fn a_catastrophic_pattern_runs_in_linear_time() {
        let s = schemas();
        let evil = format!("{}!", "a".repeat(100_000));
        let started = std::time::Instant::now();
        assert!(s.check_arguments(&json!({ "text": evil })).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn many_violations_are_bounded() {
        let s = ToolSchemas::compile(&tool(
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            None,
        ))
        .unwrap();
        let args: serde_json::Map<String, Value> =
            (0..50).map(|i| (format!("k{i}"), json!(i))).collect();
        let text = s
            .check_arguments(&Value::Object(args))
            .unwrap_err()
            .to_string();
        assert!(text.ends_with("; and 45 more"), "{text}");
    }

    #[test]
    fn output_needs_structured_content_matching_the_schema() {
        let s = schemas();
        assert!(s.check_output(Some(&json!({"words": 3}))).is_ok());
        assert!(s.check_output(Some(&json!({"words": "3"}))).is_err());
        assert!(s.check_output(None).is_err());
        let no_output = ToolSchemas::compile(&tool(json!({"type": "object"}), None)).unwrap();
        assert!(no_output.check_output(None).is_ok());
    }

    /// #28. Before: `format` was enforced under draft-07 but only annotated under 2020-12
    /// (the default), so `"format": "email"` let anything through.
    #[test]
    fn format_is_enforced_under_every_draft() {
        for draft in [None, Some("http://json-schema.org/draft-07/schema#")] {
            let mut schema = json!({"type": "object",
                "properties": {"to": {"type": "string", "format": "email"},
                               "at": {"type": "string", "format": "date-time"}}});
            if let Some(d) = draft {
                schema["$schema"] = json!(d);
            }
            let s = ToolSchemas::compile(&tool(schema, None)).unwrap();
            assert!(
                s.check_arguments(&json!({"to": "a@example.com", "at": "2026-12-07T09:00:00Z"}))
                    .is_ok()
            );
            assert!(
                s.check_arguments(&json!({"to": "not an address"})).is_err(),
                "{draft:?}"
            );
            assert!(
                s.check_arguments(&json!({"at": "yesterday"})).is_err(),
                "{draft:?}"
            );
        }
    }

    #[test]
    fn unusable_schemas_are_refused_and_references_never_fetched() {
        for (input, problem) in [
            (json!({"type": "array"}), "the root must have"),
            (
                json!({"type": "object", "properties": {"a": {"type": 7}}}),
                "not a usable",
            ),
            (
                json!({"type": "object", "$ref": "http://127.0.0.1:1/s.json"}),
                "does not point inside the schema",
            ),
            (
                json!({"type": "object", "$ref": "file:///etc/passwd"}),
                "does not point inside the schema",
            ),
        ] {
            let e = ToolSchemas::compile(&tool(input.clone(), None))
                .unwrap_err()
                .to_string();
            assert!(e.contains(problem), "{input}: {e}");
        }
    }

    /// The format cases every SDK's harness is tested against (`sdk/format-cases.json`) are
    /// what the gateway decides too.
    #[test]
    fn the_sdk_harnesses_format_cases_are_the_gateways() {
        let table: Value =
            serde_json::from_str(include_str!("../../../sdk/format-cases.json")).unwrap();
        for case in table["cases"].as_array().unwrap() {
            let (format, text, valid) = (&case[0], &case[1], case[2].as_bool().unwrap());
            let schemas = ToolSchemas::compile(&tool(
                json!({"type": "object", "properties": {"v": {"type": "string", "format": format}}}),
                None,
            ))
            .unwrap();
            let decided = schemas.check_arguments(&json!({ "v": text })).is_ok();
            assert_eq!(decided, valid, "{format} {text}");
        }
    }
}
