//! A DPoP client made by hand (RFC 9449), so each way a proof can be wrong can be sent: a
//! P-256 key, proofs with any claims, and DPoP-bound tokens from the development AS obtained
//! the way a public client does (registration, authorization code with PKCE, a proof at the
//! token endpoint).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A client's DPoP key.
pub struct DpopKey {
    encoding: EncodingKey,
    /// The public JWK its proofs carry.
    pub jwk: Value,
}

impl Default for DpopKey {
    fn default() -> Self {
        Self::new()
    }
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn new() -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        Self {
            encoding: EncodingKey::from_ec_der(doc.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256",
                        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}),
        }
    }

    /// The RFC 7638 thumbprint (what `cnf.jkt` names).
    pub fn jkt(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap(),
            self.jwk["y"].as_str().unwrap()
        );
        B64.encode(Sha256::digest(canonical))
    }

    /// A fresh proof for `method` `url`, for `token` (its `ath`) when given.
    pub fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        self.proof_with(method, url, token, json!({}))
    }

    /// [`DpopKey::proof`] with `extra` claims set over the usual ones (`iat`, `nonce`, …).
    pub fn proof_with(&self, method: &str, url: &str, token: Option<&str>, extra: Value) -> String {
        let mut claims = json!({
            "jti": format!("{:032x}", rand::random::<u128>()),
            "htm": method, "htu": url, "iat": jsonwebtoken::get_current_timestamp(),
        });
        if let Some(t) = token {
            claims["ath"] = B64.encode(Sha256::digest(t)).into();
        }
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let signed = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(signed.as_bytes(), &self.encoding, Algorithm::ES256)
                .unwrap();
        format!("{signed}.{signature}")
    }
}

/// A token from the development AS at `base` for `resource` with `scope`, bound to `key`:
/// registered as a public client, authorized (the AS approves automatically) with PKCE and
/// `dpop_jkt`, redeemed with a proof. Returns the token response.
pub async fn bound_token(base: &str, key: &DpopKey, resource: &str, scope: &str) -> Value {
    dev_as_token(base, Some(key), resource, scope).await
}

/// A token from the development AS as [`bound_token`] gets it, bound to `key` when given
/// (without one: a Bearer token). Returns the token response.
pub async fn dev_as_token(base: &str, key: Option<&DpopKey>, resource: &str, scope: &str) -> Value {
    use super::public_client::PublicClient;
    let client = PublicClient::register(&format!("{base}/dev-as/register"), "dpop-test").await;
    let jkt = key.map(DpopKey::jkt).unwrap_or_default();
    let params = client.request(resource, scope, &[("state", "s"), ("dpop_jkt", &jkt)]);
    let location = client
        .follow(&client.authorize_url(&format!("{base}/dev-as/authorize"), &params))
        .await;
    let token_url = format!("{base}/dev-as/token");
    let proof = key.map(|k| k.proof("POST", &token_url, None));
    client
        .redeem(&token_url, &PublicClient::code(&location), resource, proof)
        .await
}
