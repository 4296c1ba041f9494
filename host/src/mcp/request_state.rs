//! Integrity-protected `requestState` for 2026-07-28 "input required" round trips.
//!
//! The client echoes `requestState` verbatim, so it is attacker-controlled input (SEP-2322).
//! The host seals the plugin's own state together with what it is bound to (tenant, subject,
//! method, target, expiry) under HMAC-SHA256, and refuses anything that does not verify.
//! The plugin only ever sees state that came back intact through the host.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long a sealed state stays valid: long enough for a user to answer a form.
const TTL: Duration = Duration::from_secs(15 * 60);

/// What a sealed state is bound to; a state is only accepted for the same binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Binding {
    pub(crate) tenant: String,
    pub(crate) subject: Option<String>,
    pub(crate) method: String,
    pub(crate) target: String,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    #[serde(flatten)]
    binding: Binding,
    exp: u64,
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
}

/// Seals and opens `requestState` values with a secret key.
pub(crate) struct StateSealer {
    key: Vec<u8>,
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
        Self { key }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(payload);
        mac
    }

    /// Seal `state` for `binding`.
    pub(crate) fn seal(&self, binding: &Binding, state: Option<&str>) -> String {
        let exp = (SystemTime::now() + TTL)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let payload = serde_json::to_vec(&Sealed {
            binding: binding.clone(),
            exp,
            state: state.map(str::to_string),
        })
        .expect("serialising plain data");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", B64.encode(&payload), B64.encode(tag))
    }

    /// Verify `token` and return the plugin state it carries.
    pub(crate) fn open(
        &self,
        token: &str,
        expected: &Binding,
    ) -> Result<Option<String>, StateError> {
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
        Ok(sealed.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            tenant: "t".into(),
            subject: Some("alice".into()),
            method: "tools/call".into(),
            target: "x".into(),
        }
    }

    #[test]
    fn round_trip_and_every_refusal() {
        let s = StateSealer::new(None);
        let token = s.seal(&binding(), Some("round-1"));
        assert_eq!(
            s.open(&token, &binding()).unwrap().as_deref(),
            Some("round-1")
        );

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
