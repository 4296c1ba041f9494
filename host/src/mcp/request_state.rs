//! Integrity-protected `requestState` for 2026-07-28 "input required" round trips.
//!
//! The client echoes `requestState` verbatim, so it is attacker-controlled input (SEP-2322).
//! The host seals the plugin's own state together with what it is bound to (tenant, issuer,
//! subject, method, target), the keys of the input requests it answers, an expiry and a
//! nonce under HMAC-SHA256, and refuses anything that does not verify. Each state is
//! accepted once: its nonce is remembered as spent until it expires (per process; replicas
//! sharing `state_key_env` do not share the spent set). Responses to requests that were
//! never asked are refused. The plugin only ever sees state that came back intact.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long a sealed state stays valid: long enough for a user to answer a form.
const TTL: Duration = Duration::from_secs(15 * 60);

/// Most spent nonces remembered at once (each until its state expires).
const MAX_SPENT: usize = 100_000;

/// What a sealed state is bound to; a state is only accepted for the same binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Binding {
    pub(crate) tenant: String,
    /// The issuer that vouched for the subject: alice@X's state is not alice@Y's.
    pub(crate) issuer: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) method: String,
    pub(crate) target: String,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    #[serde(flatten)]
    binding: Binding,
    exp: u64,
    /// Makes every sealed state unique, so it can be spent once.
    nonce: String,
    /// The keys of the input requests this state answers.
    keys: Vec<String>,
    state: Option<String>,
}

/// Why a `requestState` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum StateError {
    #[error("requestState is malformed")]
    Malformed,
    #[error("requestState failed its integrity check")]
    BadSignature,
    #[error("requestState has expired; start the request again")]
    Expired,
    #[error("requestState belongs to a different request or caller")]
    WrongBinding,
    #[error("requestState was already used; start the request again")]
    Replayed,
    #[error("too many input rounds are pending; retry shortly")]
    Busy,
}

/// Seals and opens `requestState` values with a secret key.
pub(crate) struct StateSealer {
    key: Vec<u8>,
    /// Nonces already accepted, with the expiry of their state.
    spent: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for StateSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSealer(..)")
    }
}

impl StateSealer {
    /// A sealer with `key` (at least 32 bytes), or a random key when `None`.
    pub(crate) fn new(key: Option<Vec<u8>>) -> Self {
        let key = key.unwrap_or_else(|| {
            let mut k = vec![0u8; 32];
            rand::fill(&mut k[..]);
            k
        });
        Self {
            key,
            spent: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(payload);
        mac
    }

    /// Seal `state` for `binding`, answering the input requests named `keys`.
    pub(crate) fn seal(&self, binding: &Binding, keys: &[String], state: Option<&str>) -> String {
        let exp = (SystemTime::now() + TTL)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut nonce = [0u8; 16];
        rand::fill(&mut nonce);
        let payload = serde_json::to_vec(&Sealed {
            binding: binding.clone(),
            exp,
            nonce: hex::encode(nonce),
            keys: keys.to_vec(),
            state: state.map(str::to_string),
        })
        .expect("serialising plain data");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", B64.encode(&payload), B64.encode(tag))
    }

    /// Verify `token` for `expected` and responses with the keys `answered`, spend it, and
    /// return the plugin state it carries.
    pub(crate) fn open(&self, token: &str, expected: &Binding) -> Result<Opened, StateError> {
        let (payload, tag) = token.split_once('.').ok_or(StateError::Malformed)?;
        let payload = B64.decode(payload).map_err(|_| StateError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| StateError::Malformed)?;
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| StateError::BadSignature)?;
        let sealed: Sealed = serde_json::from_slice(&payload).map_err(|_| StateError::Malformed)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if sealed.exp < now {
            return Err(StateError::Expired);
        }
        if &sealed.binding != expected {
            return Err(StateError::WrongBinding);
        }
        let mut spent = self.spent.lock();
        if spent.contains_key(&sealed.nonce) {
            return Err(StateError::Replayed);
        }
        if spent.len() >= MAX_SPENT {
            spent.retain(|_, exp| *exp >= now);
        }
        if spent.len() >= MAX_SPENT {
            return Err(StateError::Busy);
        }
        spent.insert(sealed.nonce, sealed.exp);
        Ok(Opened {
            state: sealed.state,
            keys: sealed.keys,
        })
    }
}

/// What an opened `requestState` holds: the plugin's state and the keys it asked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Opened {
    pub(crate) state: Option<String>,
    pub(crate) keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            tenant: "t".into(),
            issuer: Some("https://x".into()),
            subject: Some("alice".into()),
            method: "tools/call".into(),
            target: "x".into(),
        }
    }

    #[test]
    fn round_trip_and_every_refusal() {
        let s = StateSealer::new(None);
        let keys = ["q".to_string()];
        let token = s.seal(&binding(), &keys, Some("round-1"));
        let fresh = || s.seal(&binding(), &keys, Some("round-1"));
        assert_eq!(
            s.open(&token, &binding()).unwrap(),
            Opened {
                state: Some("round-1".into()),
                keys: keys.to_vec()
            }
        );
        assert_eq!(s.open(&token, &binding()), Err(StateError::Replayed));
        let other_issuer = Binding {
            issuer: Some("https://y".into()),
            ..binding()
        };
        assert_eq!(
            s.open(&fresh(), &other_issuer),
            Err(StateError::WrongBinding),
            "alice@y cannot use alice@x's state"
        );
        let token = fresh();

        let mut tampered = token.clone().into_bytes();
        tampered[3] ^= 1;
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(matches!(
            s.open(&tampered, &binding()),
            Err(StateError::BadSignature | StateError::Malformed)
        ));
        assert_eq!(s.open("garbage", &binding()), Err(StateError::Malformed));

        let other = Binding {
            subject: Some("mallory".into()),
            ..binding()
        };
        assert_eq!(s.open(&token, &other), Err(StateError::WrongBinding));

        let other_key = StateSealer::new(None);
        assert_eq!(
            other_key.open(&token, &binding()),
            Err(StateError::BadSignature)
        );
    }
}
