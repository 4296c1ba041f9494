//! Bounds on the JSON Schemas a plugin hands the host, checked at load before the schema
//! compiler or any validation walks them.
//!
//! Owns: the limits (text size, `$ref` count, how deep one validation can recurse) and the
//! static analysis that proves a schema stays inside them. A JSON Schema validator recurses once
//! per applied subschema and once per `$ref` hop; a chain of 20 000 `$ref`s overflows any thread
//! stack at its first call, and a `$ref` cycle that never steps into the value never ends. So:
//! every reference must point inside the schema itself (`#`, `#/json/pointer`, `#anchor`, or
//! `$recursiveRef`/`$dynamicRef` to an anchor of the schema), a chain of references that does
//! not step into the value may not loop, and the longest such run of applied subschemas is
//! bounded; runs that do step into the value repeat at most once per level of the value, whose
//! depth the JSON parser already bounds (128). Must not: compile or evaluate schemas
//! (`schema` does), or decide what a refusal answers (`plugins` does).

use std::collections::HashMap;

use serde_json::Value;

/// Largest schema text (bytes).
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;
/// Most reference keywords in one schema.
pub const MAX_REFS: usize = 512;
/// Longest run of nested applied subschemas (counting each `$ref` hop as one) that one
/// validation can recurse through without stepping into the value.
pub const MAX_RUN: usize = 48;

/// Why a schema is outside the bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfBounds {
    /// The text is too large.
    #[error("the schema is {bytes} bytes; the limit is {max} bytes", max = MAX_SCHEMA_BYTES)]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// Too many `$ref`, `$dynamicRef` or `$recursiveRef` keywords.
    #[error("the schema has more than {max} references ($ref, $dynamicRef, $recursiveRef)", max = MAX_REFS)]
    TooManyRefs,
    /// A reference to something outside the schema, or to nothing.
    #[error(
        "reference `{reference}` at `{at}` does not point inside the schema (only `#`, `#/json/pointer` and `#anchor` are supported)"
    )]
    Unresolvable {
        /// Where it is (JSON pointer).
        at: String,
        /// The reference (clipped).
        reference: String,
    },
    /// A chain of references that comes back to where it started without stepping into the
    /// value: validation would never end.
    #[error(
        "references loop without stepping into the value (through `{at}`): validation would never end"
    )]
    Loop {
        /// A location on the loop.
        at: String,
    },
    /// Too deep a run of nested subschemas and references.
    #[error("one validation would recurse through {run} nested subschemas and `$ref` hops without stepping into the value (from `{at}`); the limit is {max}", max = MAX_RUN)]
    TooDeep {
        /// The run's length.
        run: usize,
        /// Where it starts.
        at: String,
    },
}

/// Check that `text`, a schema already parsed as `schema`, is inside the bounds.
pub fn check(text: &str, schema: &Value) -> Result<(), OutOfBounds> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(OutOfBounds::TooLarge { bytes: text.len() });
    }
    let index = Index::of(schema)?;
    index.runs()
}

/// Whether applying the schema under keyword `key` steps into the value (a property, an item,
/// a key) or stays on the same value; `None` when `key` holds no subschema.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Applies {
    /// Validates the same value (allOf, not, if, ...).
    Same,
    /// Validates a part of the value (properties, items, ...).
    Inside,
    /// Not applied where it stands (`$defs`): reached only by reference.
    Stored,
}

/// The subschemas under keyword `key` of a schema object, with how they apply.
fn subschemas<'v>(key: &str, value: &'v Value) -> Option<(Applies, Vec<(String, &'v Value)>)> {
    let one = |v: &'v Value| vec![(String::new(), v)];
    let list = |v: &'v Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, s)| (i.to_string(), s))
                    .collect()
            })
            .unwrap_or_default()
    };
    let map = |v: &'v Value| {
        v.as_object()
            .map(|m| m.iter().map(|(k, s)| (escape(k), s)).collect())
            .unwrap_or_default()
    };
    Some(match key {
        "allOf" | "anyOf" | "oneOf" => (Applies::Same, list(value)),
        "not" | "if" | "then" | "else" => (Applies::Same, one(value)),
        "dependentSchemas" => (Applies::Same, map(value)),
        // Draft 4–7: a schema, or a list of property names (no subschema).
        "dependencies" => (
            Applies::Same,
            map(value)
                .into_iter()
                .filter(|(_, s)| s.is_object() || s.is_boolean())
                .collect(),
        ),
        "properties" | "patternProperties" => (Applies::Inside, map(value)),
        "additionalProperties"
        | "unevaluatedProperties"
        | "propertyNames"
        | "contains"
        | "additionalItems"
        | "unevaluatedItems"
        | "contentSchema" => (Applies::Inside, one(value)),
        "items" if value.is_array() => (Applies::Inside, list(value)),
        "items" => (Applies::Inside, one(value)),
        "prefixItems" => (Applies::Inside, list(value)),
        "$defs" | "definitions" => (Applies::Stored, map(value)),
        _ => return None,
    })
}

/// JSON pointer escaping of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A reference found in the schema: where it stands and what it names.
struct Ref {
    /// Pointer of the schema object holding it.
    at: String,
    /// Pointer of the resource root it is relative to.
    base: String,
    /// The keyword's value.
    target: String,
    /// `$dynamicRef` / `$recursiveRef`: may land on any anchor of that name.
    dynamic: bool,
}

/// Every schema location, reference and anchor of one schema.
struct Index<'a> {
    /// Schema objects by pointer.
    nodes: HashMap<String, &'a Value>,
    refs: Vec<Ref>,
    /// `$anchor` / `$dynamicAnchor` names (per resource root) → pointer.
    anchors: HashMap<(String, String), String>,
    dynamic_anchors: HashMap<String, Vec<String>>,
    /// Pointer of every resource root (the root, and each subschema with `$id`).
    resources: Vec<String>,
}

impl<'a> Index<'a> {
    /// Walk `schema` (iteratively: the walk itself must not recurse on plugin data).
    fn of(schema: &'a Value) -> Result<Self, OutOfBounds> {
        let mut index = Index {
            nodes: HashMap::new(),
            refs: Vec::new(),
            anchors: HashMap::new(),
            dynamic_anchors: HashMap::new(),
            resources: vec![String::new()],
        };
        let mut stack: Vec<(String, String, &Value)> = vec![(String::new(), String::new(), schema)];
        while let Some((at, base, node)) = stack.pop() {
            index.nodes.insert(at.clone(), node);
            let Some(obj) = node.as_object() else {
                continue;
            };
            // Draft 4 spells `$id` as `id`.
            let names_resource = ["$id", "id"]
                .iter()
                .any(|k| obj.get(*k).is_some_and(Value::is_string));
            let base = if !at.is_empty() && names_resource {
                index.resources.push(at.clone());
                at.clone()
            } else {
                base
            };
            for (key, dynamic) in [
                ("$ref", false),
                ("$dynamicRef", true),
                ("$recursiveRef", true),
            ] {
                if let Some(target) = obj.get(key).and_then(Value::as_str) {
                    if index.refs.len() == MAX_REFS {
                        return Err(OutOfBounds::TooManyRefs);
                    }
                    index.refs.push(Ref {
                        at: at.clone(),
                        base: base.clone(),
                        target: target.to_string(),
                        dynamic,
                    });
                }
            }
            if let Some(name) = obj.get("$anchor").and_then(Value::as_str) {
                index
                    .anchors
                    .insert((base.clone(), name.to_string()), at.clone());
            }
            if let Some(name) = obj.get("$dynamicAnchor").and_then(Value::as_str) {
                index
                    .anchors
                    .insert((base.clone(), name.to_string()), at.clone());
                index
                    .dynamic_anchors
                    .entry(name.to_string())
                    .or_default()
                    .push(at.clone());
            }
            for (key, value) in obj {
                if let Some((_, subs)) = subschemas(key, value) {
                    for (token, sub) in subs {
                        let path = if token.is_empty() {
                            format!("{at}/{}", escape(key))
                        } else {
                            format!("{at}/{}/{token}", escape(key))
                        };
                        stack.push((path, base.clone(), sub));
                    }
                }
            }
        }
        Ok(index)
    }

    /// The pointers `r` may land on.
    fn targets(&self, r: &Ref) -> Result<Vec<String>, OutOfBounds> {
        let unresolvable = || OutOfBounds::Unresolvable {
            at: r.at.clone(),
            reference: r.target.chars().take(80).collect(),
        };
        let Some(fragment) = r.target.strip_prefix('#') else {
            return Err(unresolvable());
        };
        if r.dynamic {
            // `$recursiveRef: "#"` and `$dynamicRef` may land on the root of any resource or on
            // any anchor of the name in the dynamic scope.
            let mut all = self.resources.clone();
            if !fragment.is_empty() && !fragment.starts_with('/') {
                all.extend(
                    self.dynamic_anchors
                        .get(fragment)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
            if fragment.starts_with('/') {
                all = vec![format!("{}{}", r.base, fragment)];
            }
            return Ok(all);
        }
        let target = if fragment.is_empty() {
            r.base.clone()
        } else if fragment.starts_with('/') {
            format!("{}{}", r.base, percent_decode(fragment))
        } else {
            self.anchors
                .get(&(r.base.clone(), fragment.to_string()))
                .cloned()
                .ok_or_else(unresolvable)?
        };
        if self.nodes.contains_key(&target) {
            Ok(vec![target])
        } else {
            Err(unresolvable())
        }
    }

    /// The longest run of same-value recursion from each reference target, refusing loops and
    /// runs over [`MAX_RUN`].
    fn runs(&self) -> Result<(), OutOfBounds> {
        // For each schema location: the references applied to the same value under it, with
        // how many nested levels lie between them.
        let mut by_holder: HashMap<&str, Vec<&Ref>> = HashMap::new();
        for r in &self.refs {
            by_holder.entry(r.at.as_str()).or_default().push(r);
        }
        let mut memo: HashMap<String, usize> = HashMap::new();
        let mut starts: Vec<String> = vec![String::new()];
        for r in &self.refs {
            starts.extend(self.targets(r)?);
        }
        for start in starts {
            let run = self.run_from(&start, &by_holder, &mut memo)?;
            if run > MAX_RUN {
                return Err(OutOfBounds::TooDeep { run, at: start });
            }
        }
        Ok(())
    }

    /// The longest same-value run from `start` (iterative depth-first search with an explicit
    /// stack; a target on the current path is a loop).
    fn run_from(
        &self,
        start: &str,
        by_holder: &HashMap<&str, Vec<&Ref>>,
        memo: &mut HashMap<String, usize>,
    ) -> Result<usize, OutOfBounds> {
        enum Frame {
            Enter(String),
            Leave(String, Vec<(usize, String)>),
        }
        let mut on_path: std::collections::HashSet<String> = Default::default();
        let mut work = vec![Frame::Enter(start.to_string())];
        while let Some(frame) = work.pop() {
            match frame {
                Frame::Enter(target) => {
                    if memo.contains_key(&target) {
                        continue;
                    }
                    if !on_path.insert(target.clone()) {
                        return Err(OutOfBounds::Loop { at: target });
                    }
                    // The same-value references under `target`, each with its nesting depth.
                    let mut hops = Vec::new();
                    let mut plain = 0usize;
                    let mut walk = vec![(target.clone(), 1usize)];
                    while let Some((at, depth)) = walk.pop() {
                        plain = plain.max(depth);
                        if depth > MAX_RUN {
                            return Err(OutOfBounds::TooDeep { run: depth, at });
                        }
                        for r in by_holder.get(at.as_str()).into_iter().flatten() {
                            for to in self.targets(r)? {
                                hops.push((depth, to));
                            }
                        }
                        let Some(obj) = self.nodes.get(&at).and_then(|n| n.as_object()) else {
                            continue;
                        };
                        for (key, value) in obj {
                            if let Some((Applies::Same, subs)) = subschemas(key, value) {
                                for (token, _) in subs {
                                    let path = if token.is_empty() {
                                        format!("{at}/{}", escape(key))
                                    } else {
                                        format!("{at}/{}/{token}", escape(key))
                                    };
                                    walk.push((path, depth + 1));
                                }
                            }
                        }
                    }
                    let children: Vec<String> = hops.iter().map(|(_, to)| to.clone()).collect();
                    hops.push((plain, String::new()));
                    work.push(Frame::Leave(target, hops));
                    for child in children {
                        if on_path.contains(&child) {
                            return Err(OutOfBounds::Loop { at: child });
                        }
                        work.push(Frame::Enter(child));
                    }
                }
                Frame::Leave(target, hops) => {
                    let run = hops
                        .iter()
                        .map(|(depth, to)| {
                            if to.is_empty() {
                                *depth
                            } else {
                                depth + memo.get(to).copied().unwrap_or(0)
                            }
                        })
                        .max()
                        .unwrap_or(1);
                    on_path.remove(&target);
                    memo.insert(target, run);
                }
            }
        }
        Ok(memo.get(start).copied().unwrap_or(1))
    }
}

/// `%XX` escapes of a URI fragment decoded (JSON pointers in references are URI fragments).
fn percent_decode(fragment: &str) -> String {
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = fragment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checked(schema: &Value) -> Result<(), OutOfBounds> {
        check(&schema.to_string(), schema)
    }

    /// `$defs` d0 … d{n-1}, each a `$ref` to the next; the last is `last`.
    fn chain(n: usize, last: Value) -> Value {
        let mut defs = serde_json::Map::new();
        for i in 0..n {
            let def = if i + 1 == n {
                last.clone()
            } else {
                json!({ "$ref": format!("#/$defs/d{}", i + 1) })
            };
            defs.insert(format!("d{i}"), def);
        }
        json!({"type": "object", "$ref": "#/$defs/d0", "$defs": defs})
    }

    #[test]
    fn a_twenty_thousand_hop_chain_is_refused_without_recursing() {
        // As a plugin sent it (it crashed the gateway at its first call): too large already.
        let schema = chain(20_000, json!({"type": "string"}));
        let e = checked(&schema).unwrap_err();
        assert!(matches!(e, OutOfBounds::TooLarge { .. }), "{e}");
        // Smaller, but with more references than any tool schema needs. The walk that counts
        // them must not recurse either (this runs on a test thread's stack).
        let e = checked(&chain(600, json!({"type": "string"}))).unwrap_err();
        assert!(matches!(e, OutOfBounds::TooManyRefs), "{e}");
        let e = checked(&chain(400, json!({"type": "string"}))).unwrap_err();
        assert!(
            matches!(e, OutOfBounds::TooDeep { run, .. } if run > MAX_RUN),
            "{e}"
        );
        assert!(e.to_string().contains("the limit is 48"), "{e}");
    }

    #[test]
    fn a_loop_that_never_steps_into_the_value_is_refused() {
        for schema in [
            json!({"type": "object", "allOf": [{"$ref": "#"}]}),
            json!({"type": "object", "$ref": "#/$defs/a",
                   "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}}}),
            json!({"type": "object", "$defs": {"a": {"$anchor": "x", "not": {"$ref": "#x"}}},
                   "$ref": "#x"}),
        ] {
            let e = checked(&schema).unwrap_err();
            assert!(matches!(e, OutOfBounds::Loop { .. }), "{schema}: {e}");
        }
    }

    #[test]
    fn recursive_schemas_that_step_into_the_value_are_fine() {
        let tree = json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}}}});
        checked(&tree).unwrap();
        // What schema generators emit: `$defs` referenced from properties, several times.
        let generated = json!({"type": "object", "$defs": {
                "Address": {"type": "object", "properties": {"city": {"type": "string"}}},
                "Person": {"type": "object", "properties": {
                    "home": {"$ref": "#/$defs/Address"},
                    "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]},
                    "friends": {"type": "array", "items": {"$ref": "#/$defs/Person"}}}}},
            "properties": {"who": {"$ref": "#/$defs/Person"}, "tags": {"$ref": "#/definitions/Tags"}},
            "definitions": {"Tags": {"type": "array", "items": {"type": "string"}}}});
        checked(&generated).unwrap();
        checked(
            &json!({"type": "object", "properties": {"a%2Fb": {}}, "$ref": "#/properties/a%252Fb"}),
        )
        .unwrap();
        checked(
            &json!({"type": "object", "properties": {"a/b": {"type": "string"}},
                        "additionalProperties": {"$ref": "#/properties/a~1b"}}),
        )
        .unwrap();
    }

    #[test]
    fn references_out_of_the_schema_or_to_nothing_are_refused() {
        for target in [
            "http://127.0.0.1:1/s.json",
            "file:///etc/passwd",
            "other.json#/a",
            "#/$defs/missing",
            "#nowhere",
        ] {
            let schema = json!({"type": "object", "$ref": target, "$defs": {}});
            let e = checked(&schema).unwrap_err();
            assert!(
                matches!(e, OutOfBounds::Unresolvable { .. }),
                "{target}: {e}"
            );
        }
    }

    #[test]
    fn a_large_schema_is_refused_by_its_size() {
        let big = json!({"type": "object", "description": "x".repeat(10 << 20)});
        let e = checked(&big).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the schema is {} bytes; the limit is 262144 bytes",
                big.to_string().len()
            )
        );
    }

    /// The bounds are what keeps validation on the stack: the worst schema they admit, against
    /// the deepest value the JSON parser produces (128 levels), validates on a 2 MiB thread
    /// stack (tokio's worker default) with room to spare (run here on 1 MiB).
    #[test]
    fn the_worst_admitted_schema_validates_the_deepest_value_on_half_a_worker_stack() {
        // A run of MAX_RUN hops, the last one stepping into the value and back to the root.
        let schema = chain(
            MAX_RUN - 1,
            json!({"type": "object", "properties": {"c": {"$ref": "#"}}}),
        );
        checked(&schema).unwrap();
        let nested =
            |levels: usize| format!("{}{{}}{}", "{\"c\":".repeat(levels), "}".repeat(levels));
        // The deepest value the parser accepts.
        let levels = (100..200)
            .take_while(|n| serde_json::from_str::<Value>(&nested(*n)).is_ok())
            .last()
            .unwrap();
        assert!(
            levels < 130,
            "the parser's depth limit is what bounds the value"
        );
        let value: Value = serde_json::from_str(&nested(levels)).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let ok = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || validator.is_valid(&value))
            .unwrap()
            .join()
            .unwrap();
        assert!(ok);
    }
}
