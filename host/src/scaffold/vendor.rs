//! The SDK copy a new project carries (`vendor/portcullis-sdk`), so it builds anywhere: on a
//! colleague's machine after a clone, from any directory, with no path to this checkout and
//! no package that is not published. The files are compiled into the binary (`cargo install`
//! users have no checkout); a unit test keeps this list equal to the SDK directories.
//!
//! Owns: which SDK files a project gets. Must not: write them (`scaffold` does).

use super::Language;

/// An SDK file: its path inside the SDK's directory, and its text.
pub(super) type SdkFile = (&'static str, &'static str);

const RUST: &[SdkFile] = &[
    ("Cargo.toml", include_str!("../../../sdk/rust/Cargo.toml")),
    (
        "src/context.rs",
        include_str!("../../../sdk/rust/src/context.rs"),
    ),
    (
        "src/downstream.rs",
        include_str!("../../../sdk/rust/src/downstream.rs"),
    ),
    (
        "src/error.rs",
        include_str!("../../../sdk/rust/src/error.rs"),
    ),
    (
        "src/guest.rs",
        include_str!("../../../sdk/rust/src/guest.rs"),
    ),
    ("src/lib.rs", include_str!("../../../sdk/rust/src/lib.rs")),
    ("src/log.rs", include_str!("../../../sdk/rust/src/log.rs")),
    (
        "src/prompt.rs",
        include_str!("../../../sdk/rust/src/prompt.rs"),
    ),
    (
        "src/resource.rs",
        include_str!("../../../sdk/rust/src/resource.rs"),
    ),
    ("src/sys.rs", include_str!("../../../sdk/rust/src/sys.rs")),
    (
        "src/testing.rs",
        include_str!("../../../sdk/rust/src/testing.rs"),
    ),
    ("src/tool.rs", include_str!("../../../sdk/rust/src/tool.rs")),
    (
        "src/validate.rs",
        include_str!("../../../sdk/rust/src/validate.rs"),
    ),
    (
        "wit/plugin.wit",
        include_str!("../../../sdk/rust/wit/plugin.wit"),
    ),
];

const PYTHON: &[SdkFile] = &[
    ("README.md", include_str!("../../../sdk/python/README.md")),
    (
        "portcullis_sdk/__init__.py",
        include_str!("../../../sdk/python/portcullis_sdk/__init__.py"),
    ),
    (
        "portcullis_sdk/__main__.py",
        include_str!("../../../sdk/python/portcullis_sdk/__main__.py"),
    ),
    (
        "portcullis_sdk/_component.py",
        include_str!("../../../sdk/python/portcullis_sdk/_component.py"),
    ),
    (
        "portcullis_sdk/_host.py",
        include_str!("../../../sdk/python/portcullis_sdk/_host.py"),
    ),
    (
        "portcullis_sdk/schema.py",
        include_str!("../../../sdk/python/portcullis_sdk/schema.py"),
    ),
    (
        "portcullis_sdk/testing.py",
        include_str!("../../../sdk/python/portcullis_sdk/testing.py"),
    ),
    (
        "portcullis_sdk/validate.py",
        include_str!("../../../sdk/python/portcullis_sdk/validate.py"),
    ),
    (
        "portcullis_sdk/wit/plugin.wit",
        include_str!("../../../sdk/python/portcullis_sdk/wit/plugin.wit"),
    ),
    (
        "pyproject.toml",
        include_str!("../../../sdk/python/pyproject.toml"),
    ),
    (
        "requirements-build.txt",
        include_str!("../../../sdk/python/requirements-build.txt"),
    ),
];

const JS: &[SdkFile] = &[
    ("README.md", include_str!("../../../sdk/js/README.md")),
    (
        "bin/portcullis-plugin.mjs",
        include_str!("../../../sdk/js/bin/portcullis-plugin.mjs"),
    ),
    ("component.js", include_str!("../../../sdk/js/component.js")),
    ("host.js", include_str!("../../../sdk/js/host.js")),
    ("index.d.ts", include_str!("../../../sdk/js/index.d.ts")),
    ("index.js", include_str!("../../../sdk/js/index.js")),
    ("package.json", include_str!("../../../sdk/js/package.json")),
    ("schema.js", include_str!("../../../sdk/js/schema.js")),
    ("testing.d.ts", include_str!("../../../sdk/js/testing.d.ts")),
    ("testing.js", include_str!("../../../sdk/js/testing.js")),
    (
        "wit/plugin.wit",
        include_str!("../../../sdk/js/wit/plugin.wit"),
    ),
];

/// The files of `language`'s SDK (not its own tests or lock files).
pub(super) fn files(language: Language) -> &'static [SdkFile] {
    match language {
        Language::Rust => RUST,
        Language::Python => PYTHON,
        Language::Js => JS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of each SDK directory is carried (a new SDK file cannot be forgotten), and
    /// nothing that is not there.
    #[test]
    fn the_embedded_sdks_are_the_sdk_directories() {
        for (language, dir) in [
            (Language::Rust, "rust"),
            (Language::Python, "python"),
            (Language::Js, "js"),
        ] {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../sdk")
                .join(dir);
            let mut on_disk = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(d) = stack.pop() {
                for entry in std::fs::read_dir(&d).unwrap() {
                    let path = entry.unwrap().path();
                    let rel = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    let skipped = ["node_modules", "__pycache__", "build", "target"]
                        .contains(&name.as_str())
                        || name.ends_with(".egg-info")
                        || ["test", "test_sdk.py", "Cargo.lock", "package-lock.json"]
                            .contains(&rel.as_str());
                    if skipped {
                        continue;
                    }
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        on_disk.push(rel);
                    }
                }
            }
            on_disk.sort();
            let mut embedded: Vec<String> =
                files(language).iter().map(|(p, _)| p.to_string()).collect();
            embedded.sort();
            assert_eq!(
                embedded, on_disk,
                "sdk/{dir}: update host/src/scaffold/vendor.rs"
            );
        }
    }
}
