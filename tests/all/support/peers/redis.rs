//! A real Redis (Debian's `redis-server`, installed by `cargo xtask test`) on a loopback port,
//! without persistence; stopped when dropped. It can be stopped and started again on the same
//! port, for tests of what replicas do while it is away.

use std::process::Stdio;
use std::time::Duration;

use crate::support::free_port;

pub struct Redis {
    pub port: u16,
    child: Option<tokio::process::Child>,
    /// With TLS: the CA certificate clients must trust, and the password.
    pub tls: Option<(std::path::PathBuf, String)>,
}

impl Redis {
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
            tls: None,
        };
        redis.resume().await;
        redis
    }

    /// A Redis that speaks only TLS (a certificate for 127.0.0.1 from a CA made here with
    /// openssl) and requires `password`.
    pub async fn start_tls(password: &str) -> Self {
        let dir = crate::support::tempdir().join("redis-tls");
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let script = format!(
            "set -e; cd {d}; \
             openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca; \
             openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1; \
             printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext.cnf; \
             openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf"
        );
        let made = tokio::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .await
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let mut redis = Self {
            port: free_port(),
            child: None,
            tls: Some((dir.join("ca.pem"), password.to_string())),
        };
        redis.resume().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`, or with TLS `rediss://:<password>@127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some((_, password)) => format!("rediss://:{password}@127.0.0.1:{}", self.port),
        }
    }

    /// Kill the server (its data is gone: nothing is persisted).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.ok();
        }
    }

    /// Start the server (again) on the same port, and wait until it answers `PING`.
    pub async fn resume(&mut self) {
        let mut cmd = tokio::process::Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some((ca, password)) => {
                let dir = ca.parent().unwrap();
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(dir.join("srv.pem"))
                    .arg("--tls-key-file")
                    .arg(dir.join("srv.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(ca)
                    .args(["--tls-auth-clients", "no", "--requirepass", password])
            }
        };
        let child = cmd.stdout(Stdio::null()).kill_on_drop(true).spawn().expect(
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
        let mut cmd = tokio::process::Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some((ca, password)) = &self.tls {
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(ca)
                .args(["--no-auth-warning", "-a", password]);
        }
        let out = cmd.args(args).output().await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !text.starts_with("Could not connect") {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// The keys matching `pattern`.
    /// The string value of `key` (empty when there is none).
    pub async fn get(&self, key: &str) -> String {
        self.cli(&["--raw", "GET", key])
            .await
            .unwrap()
            .trim_end()
            .to_string()
    }

    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let text = self.cli(&["--raw", "KEYS", pattern]).await.unwrap();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}
