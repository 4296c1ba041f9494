//! What replicas keep on Redis that Redis must not read: AES-256-GCM under a key derived from
//! operator material and a purpose label, a random nonce per value, and the value's Redis key
//! as associated data (a value copied under another key does not open).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// AES-256-GCM under one derived key.
pub(super) struct Sealer(LessSafeKey);

impl Sealer {
    /// The key for `purpose` derived from `material` (a variable's value).
    pub(super) fn new(purpose: &[u8], material: &[u8]) -> Option<Self> {
        let mut derived = Sha256::new();
        derived.update(purpose);
        derived.update(material);
        let key = UnboundKey::new(&AES_256_GCM, &derived.finalize()).ok()?;
        Some(Self(LessSafeKey::new(key)))
    }

    /// `plain`, sealed for the Redis key `entry`, as base64.
    pub(super) fn seal(&self, entry: &str, mut plain: Vec<u8>) -> Option<String> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(entry.as_bytes()),
                &mut plain,
            )
            .ok()?;
        let mut sealed = nonce.to_vec();
        sealed.extend(plain);
        Some(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// What `sealed` holds, if it opens for `entry` under this key.
    pub(super) fn open(&self, entry: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        let (nonce, data) = bytes.split_at_checked(NONCE_LEN)?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(entry.as_bytes()),
                &mut data,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}
