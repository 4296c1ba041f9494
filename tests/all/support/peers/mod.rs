//! The real peers tests run against: an issuer, a downstream API, node-oidc-provider, an OTLP
//! receiver, Redis, nginx and HAProxy. Each starts on 127.0.0.1 (ephemeral port) and stops when dropped.

pub mod api;
pub mod haproxy;
pub mod issuer;
pub mod nginx;
pub mod oidc;
pub mod otlp;
pub mod redis;

pub use api::{DownstreamApi, exchange_gateway_with};
pub use haproxy::HaProxy;
pub use issuer::{TestIssuer, fixture, now};
pub use nginx::Nginx;
pub use oidc::RealAs;
pub use otlp::Receiver;
pub use redis::Redis;

/// Start a Debian-packaged server (`program` from `/usr/sbin`, else the `PATH`) with `args`,
/// output discarded, killed when dropped; returns once it accepts connections on `port`.
pub async fn spawn_listening(
    program: &str,
    args: &[&std::ffi::OsStr],
    port: u16,
) -> tokio::process::Child {
    let sbin = std::path::Path::new("/usr/sbin").join(program);
    let path = if sbin.is_file() {
        sbin
    } else {
        std::path::PathBuf::from(program)
    };
    let child = tokio::process::Command::new(&path)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} runs (cargo xtask test installs it with apt-get): {e}")
        });
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{program} did not listen on {port}");
}
