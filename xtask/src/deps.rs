//! The host's module dependency rule: the table in `host/src/lib.rs` between the
//! `dependency-rule:start` and `dependency-rule:end` markers says which top-level modules each
//! module may use. This check fails on a `crate::<module>` reference the table does not allow
//! (naming the file and line), on a module the table does not list, and on a cycle in the
//! table itself. It reads files as text: comments count, so a doc link to a forbidden module
//! is refused too (link to it from the composition root instead).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};

type Rule = BTreeMap<String, BTreeSet<String>>;

/// Check every module under `src` (a crate's `src/`) against the rule in its `lib.rs`.
pub(crate) fn check(src: &Path) -> anyhow::Result<()> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).context("reading lib.rs")?;
    let rule = parse(&lib)?;
    if let Some(cycle) = cycle(&rule) {
        bail!(
            "the dependency rule in lib.rs has a cycle: {}",
            cycle.join(" -> ")
        );
    }
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if matches!(name.as_str(), "lib" | "main") {
            continue;
        }
        let Some(allowed) = rule.get(&name) else {
            problems.push(format!(
                "{}: module `{name}` is not in the dependency rule of lib.rs",
                path.display()
            ));
            continue;
        };
        for file in rust_files(&path)? {
            let text = std::fs::read_to_string(&file)?;
            for (n, line) in text.lines().enumerate() {
                for used in references(line) {
                    if used != name && rule.contains_key(&used) && !allowed.contains(&used) {
                        problems.push(format!(
                            "{}:{}: `{name}` may not use `crate::{used}` (lib.rs dependency rule)",
                            file.display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("module dependency rule broken:\n{}", problems.join("\n"));
    }
    eprintln!(
        "xtask: module dependencies follow the rule in host/src/lib.rs ({} modules)",
        rule.len()
    );
    Ok(())
}

/// The table: `| module | a, b, c |` rows between the markers.
fn parse(lib: &str) -> anyhow::Result<Rule> {
    let start = lib
        .find("dependency-rule:start")
        .context("lib.rs has no dependency-rule:start marker")?;
    let end = lib
        .find("dependency-rule:end")
        .context("lib.rs has no dependency-rule:end marker")?;
    let mut rule = Rule::new();
    for line in lib[start..end].lines() {
        let cells: Vec<&str> = line
            .trim_start_matches("//!")
            .trim()
            .split('|')
            .map(str::trim)
            .collect();
        // `| module | may use |` splits into ["", module, uses, ""].
        let [_, module, uses, _] = cells.as_slice() else {
            continue;
        };
        if module.is_empty() || *module == "module" || module.starts_with('-') {
            continue;
        }
        let uses = uses
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        rule.insert(module.to_string(), uses);
    }
    if rule.is_empty() {
        bail!("the dependency rule in lib.rs has no rows");
    }
    Ok(rule)
}

/// `crate::<name>` occurrences in one line.
fn references(line: &str) -> Vec<String> {
    line.match_indices("crate::")
        .map(|(i, m)| {
            line[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

fn rust_files(path: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    if path.is_file() {
        return Ok(if path.extension().is_some_and(|e| e == "rs") {
            vec![path.to_path_buf()]
        } else {
            vec![]
        });
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path)? {
        out.extend(rust_files(&entry?.path())?);
    }
    Ok(out)
}

/// A cycle in the rule, if there is one.
fn cycle(rule: &Rule) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        rule: &Rule,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in rule.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, rule, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    rule.keys()
        .find_map(|m| visit(m, rule, &mut Vec::new(), &mut done))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIB: &str = "//! <!-- dependency-rule:start -->\n//! | module | may use |\n//! |---|---|\n\
                       //! | config |  |\n//! | auth | config |\n//! | mcp | auth, config |\n//! <!-- dependency-rule:end -->\n";

    #[test]
    fn the_table_parses_and_cycles_are_found() {
        let rule = parse(LIB).unwrap();
        assert_eq!(rule["mcp"], ["auth", "config"].map(String::from).into());
        assert!(rule["config"].is_empty());
        assert_eq!(cycle(&rule), None);
        let looped = LIB.replace("| config |  |", "| config | mcp |");
        assert_eq!(cycle(&parse(&looped).unwrap()).unwrap().len(), 4);
    }

    #[test]
    fn references_are_found_anywhere_in_a_line() {
        assert_eq!(
            references("use crate::auth::{A, B}; let x = crate::config::C;"),
            ["auth", "config"]
        );
        assert!(references("use std::path::Path;").is_empty());
    }
}
