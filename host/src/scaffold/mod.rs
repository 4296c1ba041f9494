//! `portcullis new`: plugin projects that build as they are, outside this repository, and go
//! on building wherever they are moved or cloned: each carries its SDK in
//! `vendor/portcullis-sdk` and names it by a relative path.
//!
//! Owns: the project templates (one directory per language) and filling them in. Must not:
//! build anything or touch an existing directory (it refuses one).

use std::path::{Path, PathBuf};

mod vendor;

/// Where a project keeps its SDK, relative to the project.
pub const VENDORED_SDK: &str = "vendor/portcullis-sdk";

/// The languages a project can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// A Rust crate using the `portcullis-sdk` crate.
    Rust,
    /// A Python module using the `portcullis-sdk` package (componentize-py).
    Python,
    /// A JavaScript module using the `portcullis-sdk` npm package (componentize-js).
    #[value(alias = "javascript")]
    Js,
}

impl Language {
    /// The project's files: path and template.
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Language::Rust => &[
                ("Cargo.toml", include_str!("rust/Cargo.toml.tmpl")),
                ("src/lib.rs", include_str!("rust/lib.rs.tmpl")),
                ("README.md", include_str!("rust/README.md.tmpl")),
                (".gitignore", "/target\n"),
            ],
            Language::Python => &[
                ("app.py", include_str!("python/app.py.tmpl")),
                ("test_app.py", include_str!("python/test_app.py.tmpl")),
                (
                    "requirements.txt",
                    include_str!("python/requirements.txt.tmpl"),
                ),
                ("README.md", include_str!("python/README.md.tmpl")),
                (".gitignore", "/.venv\n__pycache__/\n*.wasm\n"),
            ],
            Language::Js => &[
                ("package.json", include_str!("js/package.json.tmpl")),
                ("app.js", include_str!("js/app.js.tmpl")),
                ("test/app.test.js", include_str!("js/app.test.js.tmpl")),
                ("README.md", include_str!("js/README.md.tmpl")),
                (".gitignore", "/node_modules\n*.wasm\n"),
                // Install the vendored SDK as a package (with its own dependencies:
                // componentize-js, rolldown), not as a link to a folder without them.
                (".npmrc", "install-links=true\n"),
            ],
        }
    }

    /// What to run next in the new project's directory.
    pub fn next_steps(self) -> &'static str {
        match self {
            Language::Rust => "cargo test && cargo build --release --target wasm32-wasip2",
            Language::Python => {
                "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/python test_app.py && .venv/bin/python -m portcullis_sdk build app.py -o NAME.wasm"
            }
            Language::Js => "npm install && npm test && npm run build",
        }
    }

    /// The component's file stem: cargo names it after the crate with `-` as `_`; the
    /// script languages' build commands write the file the project names (its own name).
    fn stem(self, name: &str) -> String {
        match self {
            Language::Rust => name.replace('-', "_"),
            Language::Python | Language::Js => name.into(),
        }
    }
}

/// Why a project could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a usable plugin and crate name.
    #[error(
        "`{0}` is not a usable plugin name: use lowercase letters, digits and `-` (starting with a letter, at most 64)"
    )]
    Name(String),
    /// The target directory exists.
    #[error("{0} already exists; choose another name or directory")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How a new project depends on its vendored SDK, in the language's own manifest syntax: a
/// path relative to the project, so it builds wherever the project is.
pub fn sdk_dependency(language: Language) -> String {
    match language {
        Language::Rust => format!("{{ version = \"0.1\", path = \"{VENDORED_SDK}\" }}"),
        Language::Python => format!("./{VENDORED_SDK}"),
        Language::Js => format!("\"file:{VENDORED_SDK}\""),
    }
}

/// The SDK files to vendor: those of `sdk_dir` (a local copy of the SDK, e.g. one being
/// changed), else the ones this binary carries.
fn sdk_files(
    language: Language,
    sdk_dir: Option<&Path>,
) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let Some(dir) = sdk_dir else {
        return Ok(vendor::files(language)
            .iter()
            .map(|(path, text)| ((*path).to_string(), text.as_bytes().to_vec()))
            .collect());
    };
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // What a build or an install leaves behind, not the SDK.
            if [
                "node_modules",
                "__pycache__",
                "target",
                "build",
                ".venv",
                ".git",
            ]
            .contains(&name.as_str())
                || name.ends_with(".egg-info")
            {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read(&path)?));
            }
        }
    }
    Ok(out)
}

/// Create the project `name` in `language` under `parent`; returns its directory.
pub fn create(
    language: Language,
    name: &str,
    parent: &Path,
    sdk_dir: Option<&Path>,
) -> Result<PathBuf, ScaffoldError> {
    let usable = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !usable {
        return Err(ScaffoldError::Name(name.into()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let sdk = sdk_dependency(language);
    // The gateway keys per-plugin settings by the component's file stem.
    let stem = language.stem(name);
    for (file, template) in language.files() {
        let text = template
            .replace("{{name}}", name)
            .replace("{{stem}}", &stem)
            .replace("{{sdk}}", &sdk);
        let path = dir.join(file);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)
        };
        write(&path).map_err(|source| ScaffoldError::Write { path, source })?;
    }
    let vendored = dir.join(VENDORED_SDK);
    let files = sdk_files(language, sdk_dir).map_err(|source| ScaffoldError::Write {
        path: sdk_dir.map(Path::to_path_buf).unwrap_or_default(),
        source,
    })?;
    for (rel, bytes) in files {
        let path = vendored.join(rel);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, &bytes)
        };
        write(&path).map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_directories_never_overwritten() {
        let parent = std::env::temp_dir().join(format!("scaffold-{}", std::process::id()));
        for bad in ["", "Hello", "1st", "a b", "../x", "a_b"] {
            assert!(matches!(
                create(Language::Rust, bad, &parent, None),
                Err(ScaffoldError::Name(_))
            ));
        }
        let dir = create(Language::Rust, "my-tool", &parent, None).unwrap();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("Tool::new(\"my-tool.greet\", greet)"), "{lib}");
        for language in [Language::Rust, Language::Python, Language::Js] {
            let dir = create(
                language,
                &format!("p-{language:?}").to_lowercase(),
                &parent,
                None,
            )
            .unwrap();
            for (file, _) in language.files() {
                let text = std::fs::read_to_string(dir.join(file)).unwrap();
                assert!(!text.contains("{{"), "every placeholder is filled: {file}");
            }
        }
        let package = std::fs::read_to_string(parent.join("p-js/package.json")).unwrap();
        let package: serde_json::Value = serde_json::from_str(&package).unwrap();
        assert!(
            package["dependencies"]["portcullis-sdk"].is_string(),
            "{package}"
        );
        assert!(matches!(
            create(Language::Rust, "my-tool", &parent, None),
            Err(ScaffoldError::Exists(_))
        ));
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
