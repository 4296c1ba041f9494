//! DPoP proof JWTs (RFC 9449 §4), as a resource server and an authorization server both read
//! them.
//!
//! Owns: reading a proof — compact JWS, `typ: dpop+jwt`, an allowed asymmetric `alg`, a
//! public `jwk` only (no private or symmetric members), its signature under that key
//! ([`verify`]) —, the key's RFC 7638 thumbprint ([`thumbprint`]), and the claims every proof
//! must carry for the request it came with ([`for_request`]: `jti`, `htm`, `htu`, `iat`).
//! Must not: check `ath`, nonces or replay (the party receiving the proof decides those).

use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The longest proof accepted, in bytes (an RSA-4096 key's proof is about 2.5 KB).
pub(crate) const MAX_PROOF_BYTES: usize = 8192;
/// The longest `jti` accepted.
const MAX_JTI_CHARS: usize = 256;
/// Members a JWK carries only when it holds a private or symmetric key.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A proof whose signature verified under the key it carries.
pub(crate) struct Proof {
    /// The RFC 7638 thumbprint of its key (what a bound token's `cnf.jkt` is).
    pub(crate) jkt: String,
    /// Its claims.
    pub(crate) claims: Map<String, Value>,
}

/// Read and verify `proof`, signed with one of `algorithms` (`names`: the same, for the
/// message). The error says what is wrong, never the proof.
pub(crate) fn verify(
    proof: &str,
    algorithms: &[Algorithm],
    names: &[String],
) -> Result<Proof, String> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(format!("the proof is longer than {MAX_PROOF_BYTES} bytes"));
    }
    let mut segments = proof.split('.');
    let (Some(head), Some(body), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err("the proof is not a JWS in compact form".into());
    };
    let header: Map<String, Value> = B64
        .decode(head)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the proof's header is not base64url JSON")?;
    if !header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err("the proof's typ must be dpop+jwt".into());
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| Algorithm::from_str(a).ok())
        .filter(|a| algorithms.contains(a))
        .ok_or_else(|| format!("the proof's alg must be one of {}", names.join(" ")))?;
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or("the proof carries no jwk")?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err("the proof's jwk must be a public key".into());
    }
    let jkt = thumbprint(jwk).ok_or("the proof's jwk is not an EC, RSA or OKP public key")?;
    let key = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(Value::Object(jwk.clone()))
        .ok()
        .and_then(|j| DecodingKey::from_jwk(&j).ok())
        .ok_or("the proof's jwk is not a usable key")?;
    // The signature over the signing input, under the header's own key and algorithm (the
    // header was read once, above; jsonwebtoken's `decode` would read it again).
    let signed = &proof[..head.len() + 1 + body.len()];
    match jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &key, alg) {
        Ok(true) => {}
        Ok(false) => return Err("the proof's signature does not verify".into()),
        Err(_) => return Err("the proof's signature cannot be checked with its jwk".into()),
    }
    let claims: Map<String, Value> = B64
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the proof's claims are not base64url JSON")?;
    Ok(Proof { jkt, claims })
}

/// Check that `claims` are a proof for a request with `method` to `htu`, made within
/// `max_age` seconds of `now`; returns its `jti`.
pub(crate) fn for_request<'c>(
    claims: &'c Map<String, Value>,
    method: &str,
    htu: &str,
    max_age: u64,
    now: u64,
) -> Result<&'c str, String> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.chars().count() <= MAX_JTI_CHARS)
        .ok_or("the proof has no usable jti")?;
    if text("htm") != Some(method) {
        return Err(format!(
            "the proof is for another method (htm), not {method}"
        ));
    }
    let same_url = match text("htu") {
        // Most clients send the URL exactly as the server names it: no parsing then.
        Some(claimed) if claimed == htu => true,
        Some(claimed) => normalized_url(claimed).is_some_and(|u| Some(u) == normalized_url(htu)),
        None => false,
    };
    if !same_url {
        return Err(format!("the proof is for another URL (htu), not {htu}"));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or("the proof has no iat")?;
    if iat.abs_diff(now) > max_age {
        return Err(format!("the proof's iat is more than {max_age} s from now"));
    }
    Ok(jti)
}

/// The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK: its required members, in
/// lexicographic order, without whitespace.
pub(crate) fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty").and_then(Value::as_str)? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = std::collections::BTreeMap::new();
    for m in members {
        canonical.insert(*m, jwk.get(*m)?.as_str()?);
    }
    let text = serde_json::to_string(&canonical).ok()?;
    Some(B64.encode(Sha256::digest(text.as_bytes())))
}

/// `url` as two URLs naming the same resource compare (RFC 9449 §4.3: scheme and host
/// case-insensitive, the default port implied; no query or fragment).
fn normalized_url(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    if u.cannot_be_a_base() || !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!(
        "{}://{}{port}{}",
        u.scheme(),
        u.host_str()?,
        u.path()
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::thumbprint;

    #[test]
    fn thumbprints_follow_rfc_7638() {
        // RFC 7638 §3.1's example key.
        let jwk = json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(
            thumbprint(json!({"kty": "oct", "k": "x"}).as_object().unwrap()),
            None
        );
    }
}
