//! A real nginx (Debian's, installed by `cargo xtask test`) balancing round-robin over a set
//! of backends on loopback, with no stickiness, logging which backend served each request;
//! stopped when dropped.

use std::path::PathBuf;

use crate::support::{free_port, tempdir};

pub struct Nginx {
    pub base: String,
    log: PathBuf,
    child: tokio::process::Child,
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers and then exits (a SIGKILL would leave
    /// the workers serving); waited for up to 2 s.
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        for _ in 0..200 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// One request as the balancer logged it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub status: u16,
    /// The backend (`127.0.0.1:<port>`) that answered.
    pub backend: String,
    /// The request's `Mcp-Session-Id` (`-` without one).
    pub session: String,
}

impl Nginx {
    /// Balance over `backends` (`127.0.0.1:<port>` each), round robin.
    pub async fn start(backends: &[String]) -> Self {
        let dir = tempdir().join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = free_port();
        let log = dir.join("access.log");
        // A replica that refused a connection (stopping) is skipped for a second only, as
        // docs/DEPLOYMENT.md advises: with nginx's default 10 s, a rolling restart marks every
        // replica down at once ("no live upstreams").
        let servers: String = backends
            .iter()
            .map(|b| format!("server {b} max_fails=1 fail_timeout=1s; "))
            .collect();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n\
               log_format backends '$request_method $status $upstream_addr $http_mcp_session_id';\n\
               access_log {d}/access.log backends;\n\
               client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fastcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;\n\
               upstream replicas {{ {servers}}}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{\n\
                   proxy_pass http://replicas;\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n\
                   proxy_set_header Host $http_host;\n\
                   proxy_buffering off;\n\
                   proxy_read_timeout 120s;\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = super::spawn_listening(
            "nginx",
            &["-p".as_ref(), dir.as_ref(), "-c".as_ref(), path.as_ref()],
            port,
        )
        .await;
        Self {
            base: format!("http://127.0.0.1:{port}"),
            log,
            child,
        }
    }

    /// Every request logged so far (nginx writes a line when the request ends).
    pub fn logged(&self) -> Vec<Logged> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut f = line.split(' ');
                Some(Logged {
                    method: f.next()?.to_string(),
                    status: f.next()?.parse().ok()?,
                    backend: f.next()?.trim_end_matches(',').to_string(),
                    session: f.next()?.to_string(),
                })
            })
            .collect()
    }
}
