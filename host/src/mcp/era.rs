//! Which protocol era a request belongs to, and what its client declared it can do.
//!
//! Owns: the one era decision ([`Era::of`], [`Era::of_version`]) and what a plugin is told the
//! client can do. Must not: answer requests (the handlers choose era-specific answers from this).

use rmcp::RoleServer;
use rmcp::model::ProtocolVersion;
use rmcp::service::RequestContext;
use serde_json::Value;

use crate::sandbox::wit;

/// The two ways a request is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Era {
    /// 2025-03-26 … 2025-11-25: inside a session; input is asked with server→client requests.
    Session,
    /// 2026-07-28: stateless; input is asked with an `InputRequiredResult`.
    Stateless,
}

impl Era {
    /// The era of `ctx`'s request (rmcp chose it from `_meta` or the version header).
    pub(super) fn of(ctx: &RequestContext<RoleServer>) -> Self {
        ctx.protocol_version()
            .map_or(Self::Session, |v| Self::of_version(v.as_str()))
    }

    /// The era of protocol revision `version`.
    pub(super) fn of_version(version: &str) -> Self {
        if version >= ProtocolVersion::V_2026_07_28.as_str() {
            Self::Stateless
        } else {
            Self::Session
        }
    }
}

/// What a plugin is told the client can do.
pub(super) fn client_features(caps: &Value) -> wit::ClientFeatures {
    let mut f = wit::ClientFeatures::empty();
    if caps.get("sampling").is_some() {
        f |= wit::ClientFeatures::SAMPLING;
    }
    // An elicitation capability without modes means form mode (2025-11-25).
    if let Some(e) = caps.get("elicitation")
        && (e.get("url").is_none() || e.get("form").is_some())
    {
        f |= wit::ClientFeatures::ELICITATION;
    }
    if caps.get("roots").is_some() {
        f |= wit::ClientFeatures::ROOTS;
    }
    f
}
