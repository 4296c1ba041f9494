//! The README's table of the three SDKs (#30) is kept true: every function of the plugin
//! contract's interfaces, every input request, content kind and error case, and the client
//! features, has a row; no row names something the WIT does not have; and every name in a
//! cell exists in that SDK's sources (a rename or a missing feature fails here).

use std::collections::BTreeSet;

use crate::support::root;

/// The interfaces whose functions each SDK must offer, and the variants whose cases it must.
const INTERFACES: &[&str] = &[
    "host",
    "downstream",
    "tools",
    "resources",
    "prompts",
    "completion",
    "tasks",
    "approvals",
];
const VARIANTS: &[&str] = &["input-request", "content", "resource-error", "tool-error"];

/// What the WIT says a plugin can do: `interface.function`, `variant.case`, and
/// `client-features`.
fn wit_capabilities(wit: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    // The enclosing blocks: (kind, name), e.g. ("interface", "tools"), ("variant", "content").
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in wit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if line.starts_with('}') {
            blocks.pop();
            continue;
        }
        if let Some(header) = line.strip_suffix('{') {
            let mut words = header.split_whitespace();
            let kind = words.next().unwrap_or_default().to_string();
            let name = words.next().unwrap_or_default().to_string();
            if kind == "flags" && name == "client-features" {
                found.insert(name.clone());
            }
            blocks.push((kind, name));
            continue;
        }
        match blocks.last().map(|(k, n)| (k.as_str(), n.as_str())) {
            Some(("interface", iface)) if INTERFACES.contains(&iface) => {
                if let Some((name, _)) = line.split_once(": func(") {
                    found.insert(format!("{iface}.{name}"));
                }
            }
            Some(("variant", variant)) if VARIANTS.contains(&variant) => {
                let case = line
                    .trim_start_matches('%')
                    .split(['(', ','])
                    .next()
                    .unwrap_or_default()
                    .trim();
                if !case.is_empty() {
                    found.insert(format!("{variant}.{case}"));
                }
            }
            _ => {}
        }
    }
    found
}

/// The table's rows: the WIT cell and the three SDK cells.
fn table(readme: &str) -> Vec<(String, [String; 3])> {
    let start = readme
        .find("### The three SDKs side by side")
        .expect("the README has the SDK table");
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| WIT"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect();
            assert_eq!(cells.len(), 4, "{l}");
            (
                cells[0].trim_matches('`').to_string(),
                [cells[1].clone(), cells[2].clone(), cells[3].clone()],
            )
        })
        .collect()
}

/// The identifiers in the code spans of `cell`.
fn names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|span| {
            span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|t| t.len() > 1 && !t.chars().all(|c| c.is_ascii_digit()))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The text of every source file under `dir` with one of `extensions`.
fn sources(dir: &std::path::Path, extensions: &[&str]) -> String {
    let mut text = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if ["node_modules", "__pycache__", "build", "test", "target"].contains(&name.as_str())
                || name == "test_sdk.py"
            {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if extensions.iter().any(|e| name.ends_with(e)) {
                text.push_str(&std::fs::read_to_string(&path).unwrap());
                text.push('\n');
            }
        }
    }
    text
}

fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !part(before) && !part(after)
    })
}

#[test]
fn the_sdk_table_covers_the_wit_and_names_real_apis() {
    let wit = std::fs::read_to_string(root().join("wit/plugin.wit")).unwrap();
    let wanted = wit_capabilities(&wit);
    assert!(
        wanted.contains("host.log")
            && wanted.contains("tasks.task-tools")
            && wanted.contains("content.resource")
            && wanted.contains("input-request.list-roots"),
        "the WIT scan finds the capabilities: {wanted:?}"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let rows = table(&readme);
    let listed: BTreeSet<String> = rows.iter().map(|(k, _)| k.clone()).collect();
    let missing: Vec<&String> = wanted.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "rows missing from the table: {missing:?}"
    );
    let stale: Vec<&String> = listed
        .iter()
        .filter(|k| k.as_str() != "test harness" && !wanted.contains(*k))
        .collect();
    assert!(stale.is_empty(), "rows the WIT does not have: {stale:?}");
    let sdks = [
        ("Rust", sources(&root().join("sdk/rust/src"), &[".rs"])),
        (
            "Python",
            sources(&root().join("sdk/python/portcullis_sdk"), &[".py"]),
        ),
        (
            "JavaScript",
            sources(&root().join("sdk/js"), &[".js", ".mjs"]),
        ),
    ];
    for (key, cells) in &rows {
        for ((sdk, text), cell) in sdks.iter().zip(cells) {
            let named = names(cell);
            assert!(!named.is_empty(), "{key}: {sdk} names nothing: {cell}");
            for name in named {
                assert!(
                    has_word(text, &name),
                    "{key}: {sdk}'s `{name}` is not in its sources"
                );
            }
        }
    }
}
