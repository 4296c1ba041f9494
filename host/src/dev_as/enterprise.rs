//! Enterprise-Managed Authorization at the development AS: identity assertions (ID-JAG,
//! `draft-ietf-oauth-identity-assertion-authz-grant`, the MCP extension
//! `io.modelcontextprotocol/enterprise-managed-authorization`) from the enterprise IdPs the
//! operator configured, traded for access tokens with the RFC 7523 `jwt-bearer` grant.
//!
//! Owns: the trusted IdPs' keys (JWK sets from files) and checking one assertion — `typ:
//! oauth-id-jag+jwt`, a trusted `iss` and its key, `aud` = this AS, `exp`/`iat`, the
//! `client_id` of the client presenting it, a `resource` this AS issues tokens for — and
//! spending its `jti` once. Must not: issue tokens (the token endpoint does, with the scopes
//! it intersects).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::config::EnterpriseIdp;

/// The `typ` of an identity assertion JWT.
const ID_JAG_TYPE: &str = "oauth-id-jag+jwt";
/// What AS metadata advertises for this grant profile.
pub(super) const ID_JAG_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// Assertions remembered against replay.
const MAX_SPENT: usize = 10_000;

/// One trusted IdP.
struct Idp {
    issuer: String,
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
}

/// The enterprise IdPs the development AS trusts.
pub(super) struct Enterprise {
    idps: Vec<Idp>,
    /// Spent assertion ids (per IdP) until they expire.
    spent: Mutex<HashMap<String, u64>>,
}

/// A checked identity assertion.
pub(super) struct Assertion {
    /// The user, as the IdP names them.
    pub(super) subject: String,
    /// The MCP server it is for.
    pub(super) resource: String,
    /// The scopes the IdP granted.
    pub(super) scopes: Vec<String>,
}

impl Enterprise {
    /// Load each IdP's keys (`resolve` turns a configured path into a file path).
    pub(super) fn load(
        idps: &[EnterpriseIdp],
        resolve: impl Fn(&Path) -> std::path::PathBuf,
    ) -> anyhow::Result<Self> {
        let mut out = Vec::new();
        for (i, idp) in idps.iter().enumerate() {
            let file = resolve(&idp.jwks_file);
            let at = || format!("dev_as.enterprise_idps[{i}].jwks_file ({})", file.display());
            let text = std::fs::read_to_string(&file).with_context(at)?;
            let set: JwkSet = serde_json::from_str(&text)
                .or_else(|_| serde_json::from_str(&text).map(|jwk| JwkSet { keys: vec![jwk] }))
                .with_context(at)?;
            let keys = set
                .keys
                .iter()
                .filter_map(|jwk| {
                    let alg = match &jwk.algorithm {
                        jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                            Algorithm::ES256
                        }
                        jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                        _ => return None,
                    };
                    Some((
                        jwk.common.key_id.clone(),
                        alg,
                        DecodingKey::from_jwk(jwk).ok()?,
                    ))
                })
                .collect::<Vec<_>>();
            anyhow::ensure!(!keys.is_empty(), "{}: no usable public key", at());
            out.push(Idp {
                issuer: idp.issuer.clone(),
                keys,
            });
        }
        Ok(Self {
            idps: out,
            spent: Mutex::new(HashMap::new()),
        })
    }

    /// Whether any IdP is trusted (the grant is offered only then).
    pub(super) fn offered(&self) -> bool {
        !self.idps.is_empty()
    }

    /// Check `assertion`, presented by `client_id` to the AS `issuer` that issues tokens for
    /// `resources`, at `now`. The error is the OAuth error and its description.
    pub(super) fn check(
        &self,
        assertion: &str,
        client_id: &str,
        issuer: &str,
        resources: &[String],
        now: u64,
    ) -> Result<Assertion, (&'static str, String)> {
        let bad = |why: &str| ("invalid_grant", why.to_string());
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| bad("the assertion is not a JWT"))?;
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(ID_JAG_TYPE))
        {
            return Err(bad("the assertion's typ must be oauth-id-jag+jwt"));
        }
        let unverified: Map<String, Value> =
            jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(assertion)
                .map_err(|_| bad("the assertion's claims are not JSON"))?
                .claims;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let idp = self
            .idps
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or_else(|| bad("the assertion's issuer is not a trusted enterprise IdP"))?;
        let (_, alg, key) = idp
            .keys
            .iter()
            .find(|(kid, alg, _)| {
                *alg == header.alg && (header.kid.is_none() || kid == &header.kid)
            })
            .ok_or_else(|| bad("no key of the enterprise IdP verifies this assertion"))?;
        let mut v = Validation::new(*alg);
        v.set_issuer(&[iss]);
        v.set_audience(&[issuer]);
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(assertion, key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    bad("the assertion has expired")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    bad("the assertion is for another authorization server (aud)")
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    bad("the assertion's signature does not verify")
                }
                _ => bad("the assertion is not valid"),
            })?
            .claims;
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        if text("client_id") != Some(client_id) {
            return Err(bad(
                "the assertion was issued to another client (client_id)",
            ));
        }
        let resource = text("resource")
            .filter(|r| resources.iter().any(|x| x == r))
            .ok_or((
                "invalid_target",
                "the assertion's resource is not served here".to_string(),
            ))?
            .to_string();
        if let Some(jti) = text("jti") {
            let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
            let mut spent = self.spent.lock();
            if spent.len() >= MAX_SPENT {
                spent.retain(|_, until| *until >= now);
            }
            let key = format!("{iss}\u{0}{jti}");
            if spent.get(&key).is_some_and(|until| *until >= now) {
                return Err(bad("the assertion was used before (jti)"));
            }
            if spent.len() >= MAX_SPENT {
                return Err((
                    "temporarily_unavailable",
                    "too many assertions right now".into(),
                ));
            }
            spent.insert(key, exp + 30);
        }
        Ok(Assertion {
            subject: text("sub").unwrap_or_default().to_string(),
            resource,
            scopes: text("scope")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
    }
}
