//! Portcullis' integration tests: one binary (one link step), a module per area.
//!
//! Tests start real gateways on 127.0.0.1 with ephemeral ports and stop them when done. The
//! plugins and the npm test peers must be built/installed first: `cargo xtask test` does both.

#![allow(
    unreachable_pub,
    reason = "items are shared between test modules of one binary"
)]

mod approvals;
mod audit;
mod auth;
mod challenges;
mod cli;
mod cluster;
mod conformance;
mod consent;
mod deploy;
mod dev_as;
mod direct_path;
mod downstream;
mod dpop;
mod enterprise;
mod exchange;
mod guest_sdks;
mod http_transport;
mod identity;
mod isolation;
mod notes_demo;
mod parity;
mod policy;
mod real_as;
mod reload;
mod sandbox_limits;
mod scaffold;
mod schemas;
mod stdio;
mod support;
mod tasks;
mod telemetry;
mod tenancy;
