//! What a refused caller is told, in every form a client may act on.
//!
//! Owns: the `WWW-Authenticate` challenges of a [`Denial`] — one per scheme the tenant accepts
//! (`Bearer`, RFC 6750; `DPoP algs=…`, RFC 9449 §7.1), the error on the challenge of the
//! scheme the caller presented — with `resource_metadata` (RFC 9728) and the scopes to ask for
//! (kept across a step-up); the HTTP answer (status, challenge, `DPoP-Nonce`, an OAuth-style
//! JSON body); the in-band form of the same challenge for clients that act only on what a tool
//! result says ([`Challenge::in_band`]: `isError`, `_meta["mcp/www_authenticate"]` and the
//! SEP-2643 denial envelope); and the protected resource metadata document. Must not: decide
//! whether a request is refused.

use std::collections::BTreeSet;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::credential::Scheme;
use super::{Denial, Principal, TenantAuth};
use crate::config::DpopMode;

/// The `_meta` key of an in-band challenge: the `WWW-Authenticate` challenges, one per entry.
pub const IN_BAND_CHALLENGE: &str = "mcp/www_authenticate";
/// The `_meta` key of the SEP-2643 structured authorization denial.
pub const DENIAL_ENVELOPE: &str = "io.modelcontextprotocol/authorization";

/// A refusal, ready to be answered.
pub struct Challenge {
    status: StatusCode,
    /// The `WWW-Authenticate` challenges, one per scheme (empty for 400/429/503).
    challenges: Vec<String>,
    error: Option<&'static str>,
    message: String,
    nonce: Option<String>,
    retry_after: Option<u64>,
    /// Whether more authorization would cure it (so it has an in-band form).
    curable: bool,
    /// The `authorization_details` that would authorize the call (the in-band hint).
    remediation: Option<Value>,
}

/// Quote a parameter value: no quote or backslash can break out of it.
fn quoted(s: &str) -> String {
    s.replace(['"', '\\'], "'")
}

impl TenantAuth {
    /// The schemes this tenant accepts, in the order its challenges list them.
    fn schemes(&self) -> &'static [Scheme] {
        match self.dpop {
            DpopMode::Off => &[Scheme::Bearer],
            DpopMode::Allowed => &[Scheme::Bearer, Scheme::Dpop],
            DpopMode::Required => &[Scheme::Dpop],
        }
    }

    /// The answer to `denial`. `principal` (for a step-up) contributes the scopes it already
    /// holds, so a client that re-authorizes with the challenged set keeps them; `presented`
    /// is the scheme the caller used, whose challenge carries the error.
    pub fn challenge(
        &self,
        denial: &Denial,
        principal: Option<&Principal>,
        presented: Option<Scheme>,
    ) -> Challenge {
        let (status, error, description, scopes) = match denial {
            Denial::Missing => (
                StatusCode::UNAUTHORIZED,
                None,
                None,
                self.challenge_scopes.clone(),
            ),
            Denial::InvalidToken(why) => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                Some(why.clone()),
                self.challenge_scopes.clone(),
            ),
            Denial::InvalidDpopProof(why) => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_dpop_proof"),
                Some(why.clone()),
                Vec::new(),
            ),
            Denial::UseDpopNonce => (
                StatusCode::UNAUTHORIZED,
                Some("use_dpop_nonce"),
                Some("the proof must carry the server's nonce (DPoP-Nonce)".into()),
                Vec::new(),
            ),
            Denial::UserAuthentication { description, .. } => (
                StatusCode::UNAUTHORIZED,
                Some("insufficient_user_authentication"),
                Some(description.clone()),
                self.challenge_scopes.clone(),
            ),
            Denial::InsufficientAuthorization { why, .. } => (
                StatusCode::FORBIDDEN,
                Some("insufficient_authorization"),
                Some(why.clone()),
                Vec::new(),
            ),
            Denial::InsufficientScope { required } => {
                let mut all: BTreeSet<String> = required.iter().cloned().collect();
                if let Some(p) = principal {
                    // Keep what the caller already holds, so stepping up loses nothing.
                    let supported = self.scopes_supported();
                    all.extend(p.scopes.iter().filter(|s| supported.contains(s)).cloned());
                }
                (
                    StatusCode::FORBIDDEN,
                    Some("insufficient_scope"),
                    None,
                    all.into_iter().collect(),
                )
            }
            Denial::InvalidRequest(why) => (
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                Some(why.clone()),
                Vec::new(),
            ),
            Denial::Unavailable(why) => {
                let mut c = self.plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    why,
                );
                c.retry_after = Some(1);
                return c;
            }
            Denial::TooManyFailures { retry_after } => {
                let mut c = self.plain(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "too many unacceptable tokens from this address; retry later",
                );
                c.retry_after = Some(*retry_after);
                return c;
            }
        };
        let presented = presented.or(principal.and_then(|p| p.credential));
        let schemes = self.schemes();
        // The error goes on the presented scheme's challenge, or — when the tenant does not
        // accept that scheme — on its first one (a Bearer token where DPoP is required).
        let erred = presented
            .filter(|p| schemes.contains(p))
            .or(schemes.first().copied().filter(|_| presented.is_some()));
        let challenges = schemes
            .iter()
            .map(|scheme| {
                let mut params = Vec::new();
                if *scheme == Scheme::Dpop {
                    params.push(format!("algs=\"{}\"", self.dpop_algorithms.join(" ")));
                }
                if erred == Some(*scheme)
                    && let Some(e) = error
                {
                    params.push(format!("error=\"{e}\""));
                    if let Some(d) = &description {
                        params.push(format!("error_description=\"{}\"", quoted(d)));
                    }
                } else if presented.is_none()
                    && let Some(e) = error
                {
                    // Refused before any credential was read (a proof without its token).
                    params.push(format!("error=\"{e}\""));
                }
                params.push(format!("resource_metadata=\"{}\"", self.metadata_url));
                if !scopes.is_empty() {
                    params.push(format!("scope=\"{}\"", scopes.join(" ")));
                }
                if let Denial::InsufficientAuthorization {
                    details, reference, ..
                } = denial
                {
                    // The remediation draft's object: the details to ask for, and for a
                    // reusable approval the reference of a token that would already do.
                    use base64::Engine as _;
                    let mut remediation = serde_json::json!({ "authorization_details": details });
                    if let Some(r) = reference {
                        remediation["authorization_reference"] = Value::String(r.clone());
                    }
                    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(remediation.to_string());
                    params.push(format!("authorization_remediation=\"{encoded}\""));
                }
                if let Denial::UserAuthentication {
                    claims: Some(claims),
                    ..
                } = denial
                {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(claims);
                    params.push(format!("claims=\"{encoded}\""));
                }
                let name = match scheme {
                    Scheme::Bearer => "Bearer",
                    Scheme::Dpop => "DPoP",
                };
                format!("{name} {}", params.join(", "))
            })
            .collect();
        let message = match denial {
            Denial::Missing => "authentication required".to_string(),
            Denial::InsufficientScope { required } => {
                format!("this call needs the scope(s) {}", required.join(" "))
            }
            Denial::InsufficientAuthorization { why, .. } => {
                format!("this call needs a person's approval of exactly this call ({why})")
            }
            _ => description.unwrap_or_default(),
        };
        Challenge {
            status,
            challenges,
            error,
            message,
            nonce: matches!(denial, Denial::UseDpopNonce)
                .then(|| self.fresh_dpop_nonce())
                .flatten(),
            retry_after: None,
            curable: matches!(
                denial,
                Denial::Missing
                    | Denial::InvalidToken(_)
                    | Denial::InsufficientScope { .. }
                    | Denial::UserAuthentication { .. }
                    | Denial::InsufficientAuthorization { .. }
            ),
            remediation: match denial {
                Denial::InsufficientAuthorization { details, .. } => Some(details.clone()),
                _ => None,
            },
        }
    }

    /// A refusal without a challenge (429, 503).
    fn plain(&self, status: StatusCode, error: &'static str, why: &str) -> Challenge {
        Challenge {
            status,
            challenges: Vec::new(),
            error: Some(error),
            message: why.to_string(),
            nonce: None,
            retry_after: None,
            curable: false,
            remediation: None,
        }
    }

    /// The RFC 9728 protected resource metadata document, with OAuth on.
    pub fn metadata(&self) -> Option<Value> {
        self.requires_token().then(|| {
            let mut doc = json!({
                "resource": self.resource,
                "authorization_servers": self.authorization_servers,
                "scopes_supported": self.scopes_supported(),
                "bearer_methods_supported": ["header"],
                "resource_name": format!("Portcullis MCP gateway ({})", self.tenant),
            });
            let approvals = (self.approvals)();
            if !approvals.is_empty() {
                let metadata = crate::oauth::approval::types_metadata(&approvals);
                doc["authorization_details_types_supported"] =
                    json!(metadata.keys().collect::<Vec<_>>());
                doc["authorization_details_types_metadata"] = Value::Object(metadata);
            }
            if self.dpop != DpopMode::Off {
                doc["dpop_signing_alg_values_supported"] = json!(self.dpop_algorithms);
                doc["dpop_bound_access_tokens_required"] = json!(self.dpop == DpopMode::Required);
            }
            doc
        })
    }
}

impl Challenge {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `WWW-Authenticate` value: the challenges, comma-separated (RFC 9110 §11.6.1).
    pub fn header(&self) -> Option<String> {
        (!self.challenges.is_empty()).then(|| self.challenges.join(", "))
    }

    /// Whether the refusal has an in-band form (more authorization would cure it).
    pub fn curable(&self) -> bool {
        self.curable
    }

    /// The answer on the wire: status, challenge and an OAuth-style JSON body (RFC 6750
    /// defines none; JSON-RPC codes are not ours to invent here).
    pub fn response(&self) -> Response {
        let body = json!({"error": self.error.unwrap_or("unauthorized"), "error_description": self.message});
        self.with_body(body.to_string())
    }

    /// The answer on the wire with, as its body, the JSON-RPC answer to request `id`: a tool
    /// result with `isError`, the text of the refusal, the same challenges under
    /// `_meta["mcp/www_authenticate"]` and the SEP-2643 denial envelope. For clients that act
    /// only on what a tool result says; the HTTP challenge stays authoritative.
    pub fn in_band_response(&self, id: &Value) -> Response {
        self.with_body(json!({"jsonrpc": "2.0", "id": id, "result": self.in_band()}).to_string())
    }

    /// The in-band tool result.
    pub fn in_band(&self) -> Value {
        let mut envelope = json!({
            "reason": "insufficient_authorization",
            "remediation": "available",
            "credentialDisposition": "replacement",
        });
        if let Some(details) = &self.remediation {
            // An approval of one call comes on a token of its own; the caller keeps its own.
            envelope["credentialDisposition"] = "additional".into();
            envelope["remediationHints"] =
                json!([{"type": "oauth_authorization_details", "authorization_details": details}]);
        }
        json!({
            "content": [{"type": "text", "text": format!("Authorization required: {}", self.message)}],
            "isError": true,
            "_meta": {
                IN_BAND_CHALLENGE: self.challenges,
                DENIAL_ENVELOPE: envelope,
            },
        })
    }

    fn with_body(&self, body: String) -> Response {
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        let headers = resp.headers_mut();
        if let Some(v) = self.header().and_then(|h| HeaderValue::from_str(&h).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(v) = self
            .nonce
            .as_deref()
            .and_then(|n| HeaderValue::from_str(n).ok())
        {
            headers.insert("dpop-nonce", v);
        }
        if let Some(s) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
