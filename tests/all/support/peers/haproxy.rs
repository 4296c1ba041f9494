//! A real HAProxy (Debian's, installed by `cargo xtask test`) balancing round-robin over a
//! set of backends on loopback, with active health checks on `/readyz` (every 200 ms, one
//! failure takes a backend out, one success puts it back) and retries of requests whose
//! connection failed (never of one a backend may have received); stopped when dropped.

use crate::support::{free_port, tempdir};

pub struct HaProxy {
    pub base: String,
    _child: tokio::process::Child,
}

impl HaProxy {
    /// Balance over `backends` (`127.0.0.1:<port>` each).
    pub async fn start(backends: &[String]) -> Self {
        let dir = tempdir().join("haproxy");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("  server r{i} {b} check\n"))
            .collect();
        let conf = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n\
             \x20 retries 3\n  option redispatch\n  retry-on conn-failure\n  option http-server-close\n\
             frontend gateway\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
             backend replicas\n  balance roundrobin\n  option httpchk\n\
             \x20 http-check send meth GET uri /readyz ver HTTP/1.1 hdr host 127.0.0.1\n\
             \x20 http-check expect status 200\n\
             \x20 default-server inter 200ms fall 1 rise 1\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let child = super::spawn_listening(
            "haproxy",
            &["-db".as_ref(), "-f".as_ref(), path.as_ref()],
            port,
        )
        .await;
        Self {
            base: format!("http://127.0.0.1:{port}"),
            _child: child,
        }
    }
}
