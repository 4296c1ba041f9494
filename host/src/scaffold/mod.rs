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

/// Where the Rust SDK comes from in a new project's `Cargo.toml`: the `portcullis-sdk` crate
/// next to this binary's sources if they are on this machine (a checkout), else crates.io.
pub fn rust_sdk_dependency(sdk_dir: Option<&Path>) -> String {
    let local = sdk_dir.map(Path::to_path_buf).or_else(|| {
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/rust");
        checkout.join("Cargo.toml").is_file().then_some(checkout)
    });
    match local.and_then(|p| p.canonicalize().ok()) {
        Some(path) => format!(
            "{{ version = \"0.1\", path = \"{}\" }}",
            path.display().to_string().replace('\\', "/")
        ),
        None => "\"0.1\"".to_string(),
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
    let files: &[(&str, &str)] = match language {
        Language::Rust => &[
            ("Cargo.toml", include_str!("rust/Cargo.toml.tmpl")),
            ("src/lib.rs", include_str!("rust/lib.rs.tmpl")),
            ("README.md", include_str!("rust/README.md.tmpl")),
            (".gitignore", "/target\n"),
        ],
    };
    let sdk = rust_sdk_dependency(sdk_dir);
    // Cargo names the component after the crate with `-` as `_`; the gateway keys settings
    // by that file stem.
    let stem = name.replace('-', "_");
    for (file, template) in files {
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
        assert!(!lib.contains("{{"), "every placeholder is filled");
        assert!(matches!(
            create(Language::Rust, "my-tool", &parent, None),
            Err(ScaffoldError::Exists(_))
        ));
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
