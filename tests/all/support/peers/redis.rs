//! A real Redis (Debian's `redis-server`, installed by `cargo xtask test`) on a loopback port,
//! without persistence; stopped when dropped. It can be stopped and started again on the same
//! port, for tests of what replicas do while it is away.

use std::process::Stdio;
use std::time::Duration;

use crate::support::free_port;

pub struct Redis {
    pub port: u16,
    child: Option<tokio::process::Child>,
}

impl Redis {
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.resume().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill the server (its data is gone: nothing is persisted).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.ok();
        }
    }

    /// Start the server (again) on the same port, and wait until it answers `PING`.
    pub async fn resume(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "redis-server runs (installed by cargo xtask test: apt-get install redis-server)",
            );
        self.child = Some(child);
        for _ in 0..100 {
            if self.cli(&["PING"]).await.is_ok_and(|r| r == "PONG") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not answer PING on port {}", self.port);
    }

    /// `redis-cli -p <port> args…`: its answer, trimmed.
    pub async fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !text.starts_with("Could not connect") {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// The keys matching `pattern`.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let text = self.cli(&["--raw", "KEYS", pattern]).await.unwrap();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}
