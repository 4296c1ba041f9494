//! `portcullis new`: plugin projects that build as they are, outside this repository.
//!
//! Owns: the project templates (one directory per language) and filling them in. Must not:
//! build anything or touch an existing directory (it refuses one).

use std::path::{Path, PathBuf};

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
    /// The SDK's directory in a checkout of this repository.
    fn checkout_sdk(self) -> PathBuf {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        sdk.join(match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
        })
    }

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

/// How a new project depends on the SDK: a local copy (`sdk_dir`, else the one in this
/// binary's checkout if it is on this machine), else the published package; written in the
/// language's own manifest syntax.
pub fn sdk_dependency(language: Language, sdk_dir: Option<&Path>) -> String {
    let local = sdk_dir.map(Path::to_path_buf).or_else(|| {
        let checkout = language.checkout_sdk();
        checkout.is_dir().then_some(checkout)
    });
    let local = local
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.display().to_string().replace('\\', "/"));
    match (language, local) {
        (Language::Rust, Some(path)) => format!("{{ version = \"0.1\", path = \"{path}\" }}"),
        (Language::Rust, None) => "\"0.1\"".into(),
        (Language::Python, Some(path)) => format!("portcullis-sdk @ file://{path}"),
        (Language::Python, None) => "portcullis-sdk==0.2.0".into(),
        (Language::Js, Some(path)) => format!("\"file:{path}\""),
        (Language::Js, None) => "\"0.2.0\"".into(),
    }
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
    let sdk = sdk_dependency(language, sdk_dir);
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
