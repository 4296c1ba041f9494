//! `portcullis new` (#17 AC2): a scaffolded project in each language builds outside this
//! repository, the way a user builds it, passes its own generated test natively (which calls
//! host imports through the SDK's test host instead of aborting), and its component is
//! served by a gateway.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::guest_sdks::artifact_cache;
use crate::support::{Client, TestGateway, root, toml_path};

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(dir: &Path, cmd: &mut Command) -> String {
    let out = cmd.current_dir(dir).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// A project moved after it was created (as a colleague's clone would be): it names its SDK
/// by a relative path to the copy it carries, never by a path on the machine that made it.
fn moved(project: &Path, to: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let there = to.join(project.file_name().unwrap());
    std::fs::rename(project, &there).unwrap();
    for file in ["Cargo.toml", "requirements.txt", "package.json"] {
        if let Ok(text) = std::fs::read_to_string(there.join(file)) {
            assert!(
                !text.contains(&*root().to_string_lossy()) && !text.contains("/tmp/"),
                "{file} names no absolute path: {text}"
            );
        }
    }
    there
}

/// The README's configuration snippet, with the component where it was built, passes
/// `portcullis check` (#30: the Python one named a key `check` refuses).
fn readme_snippet_passes_check(project: &Path, wasm: &Path) {
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let start = readme.find("```toml\n").expect("a toml snippet") + "```toml\n".len();
    let snippet = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = wasm.parent().unwrap().to_string_lossy().replace('\\', "/");
    let config = project.join("snippet.toml");
    std::fs::write(&config, snippet.replace("path/to", &dir)).unwrap();
    let (passed, said) = crate::support::check_config(&config);
    assert!(passed, "{snippet}\n{said}");
}

#[tokio::test]
async fn a_new_rust_plugin_builds_tests_and_serves_outside_the_repository() {
    // Outside the repository: the system temp directory.
    let parent = std::env::temp_dir().join(format!("portcullis-new-{}", std::process::id()));
    std::fs::create_dir_all(&parent).unwrap();
    let created = run(
        &parent,
        Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["new", "rust", "word-count"]),
    );
    assert!(created.contains("created"), "{created}");
    let project = moved(&parent.join("word-count"), &parent.join("elsewhere"));
    // The builds share this repository's guest target directories (only to save time).
    let tested = run(
        &project,
        Command::new(cargo())
            .args(["test"])
            .env("CARGO_TARGET_DIR", root().join("target/guest-native")),
    );
    assert!(
        tested.contains("test tests::greets_with_the_configured_greeting ... ok"),
        "{tested}"
    );
    run(
        &project,
        Command::new(cargo())
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", root().join("target/guest")),
    );
    let wasm = parent.join("word_count.wasm");
    std::fs::copy(
        root().join("target/guest/wasm32-wasip2/release/word_count.wasm"),
        &wasm,
    )
    .unwrap();
    readme_snippet_passes_check(&project, &wasm);
    let gw = TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "none"
        [[tenant]]
        id = "t"
        plugins = [{wasm}]
        [tenant.plugin.word_count]
        config = {{ greeting = "Howdy" }}
        "#,
        wasm = toml_path(&wasm),
    ))
    .await;
    let r = Client::modern(&gw.url("/mcp"))
        .call_tool("word-count.greet", json!({"name": "Ada"}))
        .await;
    assert_eq!(r.text(), "Howdy, Ada!", "{r:?}");
    std::fs::remove_dir_all(&parent).ok();
}

/// `portcullis new LANGUAGE NAME` in `parent`; returns the project's directory.
fn scaffold(parent: &Path, language: &str, name: &str) -> std::path::PathBuf {
    let created = run(
        parent,
        Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["new", language, name]),
    );
    assert!(created.contains("created"), "{created}");
    parent.join(name)
}

#[tokio::test]
async fn new_python_and_javascript_plugins_build_test_and_serve_outside_the_repository() {
    let parent =
        std::env::temp_dir().join(format!("portcullis-new-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&parent).unwrap();

    // Python, as its README says: a virtual environment with the SDK (this checkout's) and
    // its pinned componentize-py, the native test, then the build.
    let py = moved(
        &scaffold(&parent, "python", "py-greeter"),
        &parent.join("elsewhere"),
    );
    run(&py, Command::new("python3").args(["-m", "venv", ".venv"]));
    run(
        &py,
        Command::new(".venv/bin/pip").args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
        ]),
    );
    let tested = run(&py, Command::new(".venv/bin/python").arg("test_app.py"));
    assert!(
        tested.contains("Ran 1 test") && tested.contains("OK"),
        "{tested}"
    );
    run(
        &py,
        Command::new(".venv/bin/python").args([
            "-m",
            "portcullis_sdk",
            "build",
            "app.py",
            "-o",
            "py-greeter.wasm",
        ]),
    );

    readme_snippet_passes_check(&py, &py.join("py-greeter.wasm"));

    // JavaScript, from a local copy of the SDK (`--sdk`, as a team changing the SDK would):
    // npm install (the vendored SDK installed as a package, with its own dependencies), npm
    // test, npm run build. Before (#30), the link to the copy left out rolldown.
    let copy = parent.join("sdk-copy");
    copy_tree(&root().join("sdk/js"), &copy);
    let created = run(
        &parent,
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["new", "js", "js-greeter", "--sdk"])
            .arg(&copy),
    );
    assert!(created.contains("created"), "{created}");
    let js = moved(&parent.join("js-greeter"), &parent.join("elsewhere"));
    run(
        &js,
        Command::new("npm").args(["install", "--no-audit", "--no-fund"]),
    );
    let tested = run(&js, Command::new("npm").arg("test"));
    assert!(
        tested.contains("# pass 1") && tested.contains("# fail 0"),
        "{tested}"
    );
    run(&js, Command::new("npm").args(["run", "build"]));
    readme_snippet_passes_check(&js, &js.join("js-greeter.wasm"));

    let gw = TestGateway::from_toml(&format!(
        r#"
        [sandbox]
        cache_dir = {cache}
        [auth]
        mode = "none"
        [[tenant]]
        id = "t"
        plugins = [{py}, {js}]
        [tenant.plugin.py-greeter]
        config = {{ greeting = "Howdy" }}
        [tenant.plugin.js-greeter]
        config = {{ greeting = "Ahoy" }}
        "#,
        cache = toml_path(&artifact_cache()),
        py = toml_path(&py.join("py-greeter.wasm")),
        js = toml_path(&js.join("js-greeter.wasm")),
    ))
    .await;
    let mut c = Client::modern(&gw.url("/mcp"));
    let r = c
        .call_tool("py-greeter.greet", json!({"name": "Ada"}))
        .await;
    assert_eq!(r.text(), "Howdy, Ada!", "{r:?}");
    let r = c
        .call_tool("js-greeter.greet", json!({"name": "Ada"}))
        .await;
    assert_eq!(r.text(), "Ahoy, Ada!", "{r:?}");
    std::fs::remove_dir_all(&parent).ok();
}

/// `from` copied to `to`, without what an install leaves (node_modules).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(name));
        } else {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}
