//! `[server]` and `[stdio]`: listeners, transport limits, session caps, the stdio identity.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Identity;

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The URL clients use to reach this gateway (scheme, host, port), e.g.
    /// `https://mcp.example.com`. Resource URLs and allowed hosts derive from it.
    /// Default: `http://<listen>`.
    pub public_url: Option<String>,
    /// Extra `Host` header values to accept (DNS-rebinding protection). The public URL's host
    /// and, on a loopback listener, `localhost`/`127.0.0.1`/`::1` are always accepted.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the gateway (`scheme://host:port`). Requests with an
    /// `Origin` outside this list get 403. Default: the public URL's origin and, on a loopback
    /// listener, loopback origins on any port.
    pub allowed_origins: Vec<String>,
    /// Browser origins (`scheme://host[:port]`) that may call the gateway cross-origin, such
    /// as a web MCP client: preflights are answered and responses carry CORS headers. They
    /// are allowed origins too. Default none (no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// Largest request body accepted (bytes); larger bodies get 413. Default 4 MiB.
    pub max_body_bytes: usize,
    /// Most live MCP sessions (2025 revisions) at once; more `initialize` calls get 503.
    pub max_sessions: usize,
    /// Most live sessions one caller (tenant, issuer, subject) may hold; its next
    /// `initialize` closes its own oldest session, so one caller can neither take every
    /// slot nor lock itself out. Default 50 (at most `max_sessions`).
    pub max_sessions_per_subject: usize,
    /// Sessions idle this long are closed. Default 600 s.
    pub session_idle_timeout_secs: u64,
    /// A request's head must arrive within this time, and on a kept-alive connection the next
    /// request's head too; otherwise the connection is closed (slow or idle clients).
    /// Default 10000 ms.
    pub header_read_timeout_ms: u64,
    /// A request's body must be received within this time from the request's start;
    /// otherwise it is answered 408. Default 30000 ms.
    pub body_read_timeout_ms: u64,
    /// A connection (HTTP/1 or HTTP/2) with no request in flight for this long is closed; an
    /// open event stream counts as in flight. Default 60000 ms.
    pub idle_timeout_ms: u64,
    /// A connection whose client accepts no byte of an answer for this long (it stopped
    /// reading) is closed, and what was buffered for it freed. Default 30000 ms.
    pub write_timeout_ms: u64,
    /// Most open connections; more are answered 503 and closed. Default 10000.
    pub max_connections: usize,
    /// Most open connections from one client address (behind a proxy, all clients share
    /// its address: raise it). Default 1000.
    pub max_connections_per_client: usize,
    /// Most concurrent streams on one HTTP/2 connection. Default 100.
    pub http2_max_concurrent_streams: u32,
    /// After SIGTERM, how long `/readyz` answers 503 while everything is still served, so
    /// load balancers that check it stop sending requests first (Kubernetes, HAProxy with
    /// health checks: a few seconds). Default 0.
    pub shutdown_drain_ms: u64,
    /// Then, with the listener closed, how long requests in flight (and open event streams)
    /// may take to finish before their connections are closed. Default 10000.
    pub shutdown_grace_ms: u64,
    /// 2025-11-25 sessions: close a call's SSE response stream after this long, in ms; the
    /// client resumes it with `GET` and `Last-Event-ID` (SSE polling, SEP-1699), so no proxy
    /// or balancer on the way holds a long silent response. The rest of the call's messages,
    /// the result included, come on the resumed stream (the gateway keeps what the call sends
    /// while the client is away, up to 8 MiB, for 60 s after the call ends). 0 (default):
    /// never. Use it only when every client resumes streams (the official SDKs do).
    pub sse_close_after_ms: u64,
    /// Environment variable holding the key that protects `requestState` (at least 32
    /// bytes). Set it when several gateway instances serve the same clients; otherwise a
    /// random per-process key is used.
    pub state_key_env: Option<String>,
    /// Allow serving with `auth.mode = "none"` on a non-loopback address. Never in production.
    pub allow_unauthenticated_public: bool,
    /// The scope a token needs for `GET /admin/plugins` (with OAuth on; with it off, only
    /// loopback clients are served). Default `portcullis:admin`.
    pub admin_scope: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            cors_origins: Vec::new(),
            max_body_bytes: 4 << 20,
            max_sessions: 1000,
            max_sessions_per_subject: 50,
            session_idle_timeout_secs: 600,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            write_timeout_ms: 30_000,
            max_connections: 10_000,
            max_connections_per_client: 1000,
            http2_max_concurrent_streams: 100,
            shutdown_drain_ms: 0,
            shutdown_grace_ms: 10_000,
            sse_close_after_ms: 0,
            state_key_env: None,
            allow_unauthenticated_public: false,
            admin_scope: "portcullis:admin".into(),
        }
    }
}

/// `[stdio]`: who the local user of `portcullis stdio` is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StdioConfig {
    /// The tenant to serve. Default: the first tenant.
    pub tenant: Option<String>,
    /// The identity; `PORTCULLIS_SUBJECT` and `PORTCULLIS_SCOPES` (space-separated) in the
    /// environment override it.
    #[serde(flatten)]
    pub identity: Identity,
}

impl Default for StdioConfig {
    fn default() -> Self {
        Self {
            tenant: None,
            identity: Identity {
                subject: "local-user".into(),
                scopes: vec!["*".into()],
            },
        }
    }
}
