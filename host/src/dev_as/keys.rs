//! The development authorization server's signing key: ES256, generated at start or kept in
//! a file (PKCS#8, base64) so restarts keep issuing tokens clients already trust.

use std::path::Path;

use anyhow::Context as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A P-256 key that signs access tokens.
pub(crate) struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

impl SigningKey {
    /// Load the key from `file`, or generate one (and save it there if a file is given).
    pub(crate) fn load_or_generate(file: Option<&Path>) -> anyhow::Result<Self> {
        let pkcs8 = match file {
            Some(f) if f.exists() => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading the dev AS key {}", f.display()))?;
                STANDARD
                    .decode(text.trim())
                    .with_context(|| format!("{} is not a base64 PKCS#8 key", f.display()))?
            }
            _ => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| anyhow::anyhow!("generating the dev AS key failed"))?;
                let der = doc.as_ref().to_vec();
                if let Some(f) = file {
                    write_private(f, &STANDARD.encode(&der))
                        .with_context(|| format!("saving the dev AS key to {}", f.display()))?;
                }
                der
            }
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|e| anyhow::anyhow!("the dev AS key is not a P-256 PKCS#8 key: {e}"))?;
        let point = pair.public_key().as_ref();
        anyhow::ensure!(
            point.len() == 65 && point[0] == 4,
            "unexpected public key encoding"
        );
        let kid = hex::encode(&Sha256::digest(point)[..8]);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        let decoding = DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default(),
        )?;
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ec_der(&pkcs8),
            decoding,
            jwk,
        })
    }

    /// Sign `claims` as an RFC 9068 access token.
    pub(crate) fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Verify a token this key signed, issued by `issuer` for one of `audiences`; returns its claims.
    pub(crate) fn verify(
        &self,
        token: &str,
        issuer: &str,
        audiences: &[String],
    ) -> Result<serde_json::Map<String, Value>, jsonwebtoken::errors::Error> {
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_issuer(&[issuer]);
        v.set_audience(audiences);
        v.leeway = 5;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &self.decoding, &v)
            .map(|d| d.claims)
    }

    /// The public key set.
    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }
}

pub(super) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
