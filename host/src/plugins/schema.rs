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

    /// Check a call's arguments against `inputSchema`.
    pub fn check_arguments(&self, arguments: &Value) -> Result<(), Violations> {
        check(&self.input, arguments)
    }

    /// Check a successful result's `structuredContent` against `outputSchema`: with an output
    /// schema, structured content is required.
    pub fn check_output(&self, structured: Option<&Value>) -> Result<(), Violations> {
        match (&self.output, structured) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(Violations::one(
                "no structuredContent, but the tool declares an outputSchema",
            )),
            (Some(schema), Some(value)) => check(schema, value),
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

fn check(schema: &Validator, value: &Value) -> Result<(), Violations> {
    let mut described = Vec::new();
    let mut more = 0;
    for error in schema.iter_errors(value) {
        if described.len() == MAX_VIOLATIONS {
            more += 1;
            continue;
        }
        let at = error.instance_path().to_string();
        let at = if at.is_empty() { "/".to_string() } else { at };
        described.push(clip(&format!("at `{at}`: {}", error.masked())));
    }
    if described.is_empty() {
        Ok(())
    } else {
        Err(Violations { described, more })
    }
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
    fn arguments_are_checked_with_values_masked() {
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
        assert_eq!(wrong, "at `/text`: value is not of type \"string\"");
        let extra = s
            .check_arguments(&json!({"text": "a", "secret": "hunter2"}))
            .unwrap_err()
            .to_string();
        assert!(
            extra.contains("secret") && !extra.contains("hunter2"),
            "{extra}"
        );
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
}
