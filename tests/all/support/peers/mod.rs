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
