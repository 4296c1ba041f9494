//! DPoP proofs (RFC 9449) at the resource server.
//!
//! Owns: checking one proof against the request it came with ([`ProofChecker::check`], RFC
//! 9449 §4.3: `typ`, an allowed asymmetric `alg`, a public `jwk` only, the signature, `htm`,
//! `htu` against the tenant's public URL, the `iat` window, `ath` = the token's hash, and a
//! server nonce when required), the key's RFC 7638 thumbprint (what `cnf.jkt` must equal),
//! stateless server nonces (a keyed MAC of the time, valid on every replica sharing the key),
//! and the replay cache ([`ProofChecker::spend`]): each proof's `jti` is spent once, on this
//! replica and — with `[cluster]` — on every replica through [`SharedReplays`]. Must not:
//! validate the access token (`jwt`, `introspect`) or decide the tenant's DPoP policy
//! (`TenantAuth`).
//!
//! A proof is checked where the request arrives and spent only where it is served: a request
//! forwarded to the replica holding its session is authenticated there again, with the same
//! proof, so the forwarding replica checks it without spending it (`front` decides which).

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use jsonwebtoken::Algorithm;
use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Denial;
use crate::config::DpopConfig;
use crate::oauth::{self, proof::Proof};

/// How far a nonce's time may lie ahead of this replica's clock (replicas' clocks differ).
const NONCE_SKEW_SECS: u64 = 5;

/// A proof that passed every check but the replay check.
#[derive(Debug)]
pub(crate) struct CheckedProof {
    /// The RFC 7638 thumbprint of the proof's key: what the token's `cnf.jkt` must be.
    pub(crate) jkt: String,
    /// What the replay cache records: the key and the `jti`, hashed.
    spend_key: [u8; 16],
    /// Until when the proof would be accepted (its `iat` + the window): how long to remember it.
    until: u64,
}

/// The replay cache every replica shares (`cluster` implements it on Redis).
pub trait SharedReplays: Send + Sync {
    /// Record `key` until `until` (Unix seconds): `Ok(true)` when it was not recorded yet,
    /// `Ok(false)` when it was (a replay), `Err` when the shared store cannot be asked.
    fn first_use(&self, key: [u8; 16], until: u64) -> BoxFuture<'_, Result<bool, String>>;
}

/// Spent proofs on this replica: bounded, each kept until its `iat` window has passed.
struct Spent {
    capacity: usize,
    until: HashMap<[u8; 16], u64>,
    /// In the order they were spent, to drop expired ones without scanning.
    order: VecDeque<([u8; 16], u64)>,
}

impl Spent {
    /// Record `key`: `Ok(true)` when new, `Ok(false)` for a replay, `Err` when full.
    fn record(&mut self, key: [u8; 16], until: u64, now: u64) -> Result<bool, ()> {
        self.expire(now);
        if let Some(&u) = self.until.get(&key)
            && u >= now
        {
            return Ok(false);
        }
        if self.until.len() >= self.capacity {
            // Expired entries may sit behind a live one in `order`: sweep them all once.
            self.until.retain(|_, u| *u >= now);
            self.order.retain(|(_, u)| *u >= now);
            if self.until.len() >= self.capacity {
                return Err(());
            }
        }
        self.until.insert(key, until);
        self.order.push_back((key, until));
        Ok(true)
    }

    /// Drop the expired proofs at the front of `order`.
    fn expire(&mut self, now: u64) {
        while let Some(&(k, u)) = self.order.front() {
            if u >= now {
                break;
            }
            self.order.pop_front();
            if self.until.get(&k) == Some(&u) {
                self.until.remove(&k);
            }
        }
    }
}

/// Checks DPoP proofs for every tenant that accepts them.
pub(crate) struct ProofChecker {
    algorithms: Vec<Algorithm>,
    /// The names, for `WWW-Authenticate: DPoP algs=…` and the metadata.
    pub(crate) algorithm_names: Vec<String>,
    max_age: u64,
    /// Whether every proof must carry a current server nonce.
    pub(crate) nonce_required: bool,
    nonce_lifetime: u64,
    nonce_key: [u8; 32],
    spent: Mutex<Spent>,
    shared: OnceLock<Arc<dyn SharedReplays>>,
}

impl std::fmt::Debug for ProofChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofChecker")
            .field("algorithms", &self.algorithm_names)
            .finish_non_exhaustive()
    }
}

/// Why a proof is not acceptable (shown to the client in the challenge; never the proof).
fn invalid(why: impl Into<String>) -> Denial {
    Denial::InvalidDpopProof(why.into())
}

impl ProofChecker {
    /// From `[auth.dpop]`; nonces are keyed by `key` (derived from `server.state_key_env`, so
    /// every replica accepts every replica's nonces), or a random key when there is none.
    pub(crate) fn new(config: &DpopConfig, key: Option<&[u8]>) -> Self {
        let algorithms = config
            .algorithms
            .iter()
            .filter_map(|a| Algorithm::from_str(a).ok())
            .collect();
        let mut nonce_key = [0u8; 32];
        match key {
            Some(k) => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(k).expect("any key length");
                mac.update(b"portcullis dpop nonce");
                nonce_key.copy_from_slice(&mac.finalize().into_bytes());
            }
            None => rand::fill(&mut nonce_key),
        }
        Self {
            algorithms,
            algorithm_names: config.algorithms.clone(),
            max_age: config.max_age_secs,
            nonce_required: config.nonce,
            nonce_lifetime: config.nonce_lifetime_secs,
            nonce_key,
            spent: Mutex::new(Spent {
                capacity: config.replay_cache_entries,
                until: HashMap::new(),
                order: VecDeque::new(),
            }),
            shared: OnceLock::new(),
        }
    }

    /// Record spent proofs on `shared` too, for every replica at once.
    pub(crate) fn share_through(&self, shared: Arc<dyn SharedReplays>) {
        let _ = self.shared.set(shared);
    }

    /// A nonce for proofs made from now on (RFC 9449 §8).
    pub(crate) fn fresh_nonce(&self, now: u64) -> String {
        let mut out = now.to_be_bytes().to_vec();
        out.extend_from_slice(&self.nonce_mac(now));
        B64.encode(out)
    }

    fn nonce_mac(&self, at: u64) -> [u8; 16] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.nonce_key).expect("any key length");
        mac.update(&at.to_be_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        out
    }

    fn nonce_is_current(&self, nonce: &str, now: u64) -> bool {
        let Ok(bytes) = B64.decode(nonce) else {
            return false;
        };
        if bytes.len() != 24 {
            return false;
        }
        let at = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let mac = self.nonce_mac(at);
        // Constant time: the MAC is the secret part.
        let equal = bytes[8..]
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        equal && at <= now + NONCE_SKEW_SECS && now.saturating_sub(at) <= self.nonce_lifetime
    }

    /// Check `proof` for a request with `method` to `htu` (the tenant's public URL) carrying
    /// `token`, at `now`. Everything but replay: see [`ProofChecker::spend`].
    pub(crate) fn check(
        &self,
        proof: &str,
        method: &str,
        htu: &str,
        token: &str,
        now: u64,
    ) -> Result<CheckedProof, Denial> {
        let Proof { jkt, claims } =
            oauth::proof::verify(proof, &self.algorithms, &self.algorithm_names)
                .map_err(invalid)?;
        let jti =
            oauth::proof::for_request(&claims, method, htu, self.max_age, now).map_err(invalid)?;
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        if text("ath") != Some(access_token_hash(token).as_str()) {
            return Err(invalid(
                "the proof's ath is not the hash of this access token",
            ));
        }
        if self.nonce_required && !text("nonce").is_some_and(|n| self.nonce_is_current(n, now)) {
            return Err(Denial::UseDpopNonce);
        }
        let mut h = Sha256::new();
        h.update(jkt.as_bytes());
        h.update([0]);
        h.update(jti.as_bytes());
        let mut spend_key = [0u8; 16];
        spend_key.copy_from_slice(&h.finalize()[..16]);
        let iat = claims.get("iat").and_then(Value::as_u64).unwrap_or(now);
        Ok(CheckedProof {
            jkt,
            spend_key,
            until: iat + self.max_age,
        })
    }

    /// Spend `proof`: refused if it was presented before, here or (with `[cluster]`) on any
    /// replica; 503 while that cannot be told.
    pub(crate) async fn spend(&self, proof: &CheckedProof, now: u64) -> Result<(), Denial> {
        match self.first_use(proof.spend_key, proof.until, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(invalid("the proof was presented before (its jti is spent)")),
            Err(e) => {
                tracing::warn!("refused a DPoP proof: {e}");
                Err(Denial::Unavailable(
                    "DPoP proofs cannot be checked for replay right now; retry shortly".into(),
                ))
            }
        }
    }

    /// Record `key` (a digest of something that may be used once: a proof, a single-use
    /// approval) until `until`: `Ok(true)` the first time, `Ok(false)` after, here or (with
    /// `[cluster]`) on any replica; `Err` when that cannot be told (the cache is full of live
    /// entries, or the shared store is away).
    pub(crate) async fn first_use(
        &self,
        key: [u8; 16],
        until: u64,
        now: u64,
    ) -> Result<bool, String> {
        match self.spent.lock().record(key, until, now) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(()) => {
                return Err(
                    "the replay cache is full of live entries (raise auth.dpop.replay_cache_entries)"
                        .into(),
                );
            }
        }
        match self.shared.get() {
            Some(shared) => shared
                .first_use(key, until)
                .await
                .map_err(|e| format!("the shared replay cache cannot be asked: {e}")),
            None => Ok(true),
        }
    }
}

/// The hash a proof's `ath` must carry for `token` (RFC 9449 §4.2).
fn access_token_hash(token: &str) -> String {
    B64.encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const HTU: &str = "https://gw.example/t/a/mcp";
    const TOKEN: &str = "the-access-token";

    /// A P-256 key pair: what signs proofs, and its public JWK.
    struct Key {
        encoding: EncodingKey,
        jwk: Value,
    }

    fn key() -> Key {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        Key {
            encoding: EncodingKey::from_ec_der(doc.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}),
        }
    }

    /// A proof signed by `key` with header `jwk` (the key's own unless overridden) and `claims`.
    fn proof_with(key: &Key, jwk: &Value, typ: &str, claims: &Value) -> String {
        // Written by hand: a JWK type would drop the members a hostile header may carry.
        let header = json!({"typ": typ, "alg": "ES256", "jwk": jwk});
        let signed = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(signed.as_bytes(), &key.encoding, Algorithm::ES256).unwrap();
        format!("{signed}.{signature}")
    }

    fn claims(now: u64) -> Value {
        json!({"jti": format!("j-{}", rand::random::<u64>()), "htm": "POST", "htu": HTU, "iat": now,
               "ath": access_token_hash(TOKEN)})
    }

    fn proof(key: &Key, claims: &Value) -> String {
        proof_with(key, &key.jwk, "dpop+jwt", claims)
    }

    fn checker(nonce: bool, capacity: usize) -> ProofChecker {
        ProofChecker::new(
            &DpopConfig {
                nonce,
                replay_cache_entries: capacity,
                ..DpopConfig::default()
            },
            Some(b"0123456789abcdef0123456789abcdef"),
        )
    }

    fn refused(r: Result<CheckedProof, Denial>) -> String {
        match r {
            Err(Denial::InvalidDpopProof(why)) => why,
            other => panic!("expected an invalid proof, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_proof_for_this_request_is_accepted_once() {
        let (k, c) = (key(), checker(false, 100));
        let now = jsonwebtoken::get_current_timestamp();
        let p = proof(&k, &claims(now));
        // The query is not part of htu; scheme and host compare case-insensitively.
        let checked = c
            .check(&p, "POST", "HTTPS://GW.example/t/a/mcp", TOKEN, now)
            .unwrap();
        assert_eq!(
            checked.jkt,
            oauth::proof::thumbprint(k.jwk.as_object().unwrap()).unwrap()
        );
        c.spend(&checked, now).await.unwrap();
        let again = c.check(&p, "POST", HTU, TOKEN, now).unwrap();
        assert!(
            matches!(c.spend(&again, now).await, Err(Denial::InvalidDpopProof(w)) if w.contains("presented before"))
        );
    }

    #[test]
    fn every_mismatch_with_the_request_or_the_token_is_refused() {
        let (k, c) = (key(), checker(false, 100));
        let now = jsonwebtoken::get_current_timestamp();
        let good = claims(now);
        let with = |field: &str, value: Value| {
            let mut c = good.clone();
            c[field] = value;
            c
        };
        for (claims, why) in [
            (with("htm", json!("GET")), "htm"),
            (with("htu", json!("https://gw.example/t/b/mcp")), "htu"),
            (with("htu", json!("https://other.example/t/a/mcp")), "htu"),
            (with("iat", json!(now - 301)), "iat"),
            (with("iat", json!(now + 301)), "iat"),
            (
                with("ath", json!(access_token_hash("another token"))),
                "ath",
            ),
            (with("jti", json!("")), "jti"),
        ] {
            let why_got = refused(c.check(&proof(&k, &claims), "POST", HTU, TOKEN, now));
            assert!(why_got.contains(why), "{why}: {why_got}");
        }
        assert!(
            refused(c.check(
                &proof_with(&k, &k.jwk, "JWT", &good),
                "POST",
                HTU,
                TOKEN,
                now
            ))
            .contains("typ")
        );
        // Signed by one key, naming another: the signature does not verify.
        let other = key();
        assert!(
            refused(c.check(
                &proof_with(&k, &other.jwk, "dpop+jwt", &good),
                "POST",
                HTU,
                TOKEN,
                now
            ))
            .contains("signature")
        );
        // A private key in the header is refused before anything else.
        let mut private = k.jwk.clone();
        private["d"] = json!("AAAA");
        assert!(
            refused(c.check(
                &proof_with(&k, &private, "dpop+jwt", &good),
                "POST",
                HTU,
                TOKEN,
                now
            ))
            .contains("public")
        );
        // HMAC (and anything not allowed) is refused by its alg.
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("dpop+jwt".into());
        let hs = jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(b"k")).unwrap();
        assert!(refused(c.check(&hs, "POST", HTU, TOKEN, now)).contains("alg"));
        for junk in ["", "a.b", "a.b.c.d", "!!!.b.c", &"x".repeat(9000)] {
            refused(c.check(junk, "POST", HTU, TOKEN, now));
        }
    }

    #[test]
    fn nonces_are_required_when_configured_and_expire() {
        let (k, c) = (key(), checker(true, 100));
        let now = jsonwebtoken::get_current_timestamp();
        let without = proof(&k, &claims(now));
        assert!(matches!(
            c.check(&without, "POST", HTU, TOKEN, now),
            Err(Denial::UseDpopNonce)
        ));
        let mut fresh = claims(now);
        fresh["nonce"] = json!(c.fresh_nonce(now));
        c.check(&proof(&k, &fresh), "POST", HTU, TOKEN, now)
            .unwrap();
        let mut stale = claims(now);
        stale["nonce"] = json!(c.fresh_nonce(now - 301));
        assert!(matches!(
            c.check(&proof(&k, &stale), "POST", HTU, TOKEN, now),
            Err(Denial::UseDpopNonce)
        ));
        // Another key's nonce (another gateway) is not this one's.
        let mut foreign = claims(now);
        foreign["nonce"] = json!(
            ProofChecker::new(
                &DpopConfig::default(),
                Some(b"another key, another gateway!!!")
            )
            .fresh_nonce(now)
        );
        assert!(matches!(
            c.check(&proof(&k, &foreign), "POST", HTU, TOKEN, now),
            Err(Denial::UseDpopNonce)
        ));
    }

    #[tokio::test]
    async fn a_full_replay_cache_refuses_rather_than_forgets() {
        let (k, c) = (key(), checker(false, 2));
        let now = jsonwebtoken::get_current_timestamp();
        for _ in 0..2 {
            let p = c
                .check(&proof(&k, &claims(now)), "POST", HTU, TOKEN, now)
                .unwrap();
            c.spend(&p, now).await.unwrap();
        }
        let third = c
            .check(&proof(&k, &claims(now)), "POST", HTU, TOKEN, now)
            .unwrap();
        assert!(matches!(
            c.spend(&third, now).await,
            Err(Denial::Unavailable(_))
        ));
        // Once the first two are past their window, there is room again.
        c.spend(&third, now + 301).await.unwrap();
    }
}
